"""A small synthetic cube matching docs/CUBE_CONTRACT.md, for fast unit tests of models/."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

DEPARTMENTS = {"01": ("R84", 650_000.0), "69": ("R84", 1_870_000.0), "2A": ("R94", 160_000.0)}


def synthetic_cube(
    frequency: str = "weekly",
    periods: int = 60,
    start: str = "2020-03-21",
    seed: int = 0,
    as_of: str | None = None,
) -> xr.Dataset:
    """Epidemic-like counts for 3 départements, their 2 régions and France.

    Parameters
    ----------
    frequency:
        ``weekly`` (dates are Saturdays) or ``daily``.
    periods:
        Length of the date axis.
    as_of:
        Drop dates on or after it, as ``open_cube(..., as_of=...)`` does.

    Returns
    -------
    xr.Dataset with dims (territory, date), variables ``inc_hosp``, ``inc_icu``, ``hosp``,
    ``stringency_index`` and the contract's territory coordinates.
    """
    rng = np.random.default_rng(seed)
    freq = "W-SAT" if frequency == "weekly" else "D"
    dates = pd.date_range(pd.Timestamp(start), periods=periods, freq=freq)
    t = np.arange(periods) * (7 if frequency == "daily" else 1) / (7 if frequency == "daily" else 1)
    scale = 7.0 if frequency == "weekly" else 1.0
    deps = list(DEPARTMENTS)
    rows = []
    for i, (_code, (_, pop)) in enumerate(DEPARTMENTS.items()):
        weeks = t if frequency == "weekly" else t / 7
        wave = 2 + 30 * np.exp(-(((weeks - 12 - 3 * i) / 5) ** 2)) + 40 * np.exp(
            -(((weeks - 38 - 2 * i) / 6) ** 2)
        )
        mean = scale * wave * pop / 1e6
        if frequency == "daily":
            mean = mean * (1 + 0.25 * np.cos(2 * np.pi * np.arange(periods) / 7))
        rows.append(rng.poisson(mean).astype(float))
    dep = np.array(rows)
    regions = sorted({r for r, _ in DEPARTMENTS.values()})
    reg = np.array(
        [dep[[DEPARTMENTS[d][0] == r for d in deps]].sum(axis=0) for r in regions]
    )
    values = np.vstack([dep, reg, dep.sum(axis=0, keepdims=True)])
    territories = [*deps, *regions, "FR"]
    level = ["department"] * len(deps) + ["region"] * len(regions) + ["country"]
    parent = [DEPARTMENTS[d][0] for d in deps] + ["FR"] * len(regions) + [""]
    pops = [DEPARTMENTS[d][1] for d in deps]
    pops += [sum(DEPARTMENTS[d][1] for d in deps if DEPARTMENTS[d][0] == r) for r in regions]
    pops += [sum(pops[: len(deps)])]
    stringency = np.clip(50 + 30 * np.sin(np.arange(periods) / 6), 0, 100)
    ds = xr.Dataset(
        {
            "inc_hosp": (("territory", "date"), values),
            "inc_icu": (("territory", "date"), np.round(values * 0.2)),
            "hosp": (("territory", "date"), np.round(values * 3.0)),
            "stringency_index": (
                ("territory", "date"),
                np.tile(stringency, (len(territories), 1)),
            ),
        },
        coords={
            "territory": territories,
            "date": dates,
            "territory_level": ("territory", level),
            "territory_parent": ("territory", parent),
            "territory_name": ("territory", territories),
            "population": ("territory", np.array(pops, dtype=float)),
        },
        attrs={"vintage_id": "synthetic-1", "issued_at": str(dates[-1].date()), "as_of": ""},
    )
    for name in ds.data_vars:
        ds[name].attrs = {"units": "count", "description": name, "source": "synthetic",
                          "licence": "none", "aggregation": "sum"}
    if as_of is not None:
        ds = ds.sel(date=ds["date"] < np.datetime64(pd.Timestamp(as_of)))
        ds.attrs["as_of"] = str(pd.Timestamp(as_of).date())
    return ds
