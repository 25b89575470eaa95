"""Synthetic cubes for the scenario tests (docs/CUBE_CONTRACT.md shape, renewal-generated)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from scenarios.params import EpiParameters

DEPS = {"01": ("R84", 650_000.0), "69": ("R84", 1_870_000.0), "75": ("R11", 2_150_000.0)}
EMPTY_MEASURES_CSV = "measure_id,type,start,end,territories,hour,modelled,confirmed,source\n"


def renewal_series(r: np.ndarray, seed_level: float, w: np.ndarray) -> np.ndarray:
    """Deterministic renewal ``A_t = R_t sum_s w_s A_{t-s}`` started at a flat ``seed_level``."""
    g = len(w) - 1
    a = np.full(len(r) + g, seed_level, dtype=float)
    for t in range(len(r)):
        a[g + t] = r[t] * (a[t: t + g] @ w[1:][::-1])
    return a[g:]


def synthetic_daily(start: str = "2020-03-19", end: str = "2020-10-24", seed: int = 0,
                    lockdown: tuple[str, str] | None = None, effect: float = 0.5,
                    r_base: float = 1.0) -> xr.Dataset:
    """Daily cube: 3 départements, 2 régions, FR; admissions from a renewal process.

    Parameters
    ----------
    lockdown:
        (first, last) day of a lockdown multiplying R by ``effect`` (applied on infection dates,
        seen in admissions through the default infection-to-admission delay).
    """
    rng = np.random.default_rng(seed)
    p = EpiParameters()
    w, f = p.generation_interval(), p.infection_to_admission()
    dates = pd.date_range(start, end)
    n = len(dates)
    ext = pd.date_range(dates[0] - pd.Timedelta(days=len(f) - 1), dates[-1])
    m = np.ones(len(ext))
    if lockdown:
        m[(ext >= lockdown[0]) & (ext <= lockdown[1])] = effect
    # R of admissions = delay-weighted R of infections.
    # R of admissions = delay-weighted R of infections; a slow wave around r_base.
    wave = r_base + 0.25 * np.sin(2 * np.pi * np.arange(n) / 150)
    r_adm = wave * np.convolve(m, f)[len(f) - 1: len(f) - 1 + n]
    rows_inc, rows_icu, rows_hosp, rows_icu_stock = [], [], [], []
    for i, (_, pop) in enumerate(DEPS.values()):
        level = pop / 1e6 * (20 + 5 * i)
        mean = renewal_series(r_adm * (1 + 0.02 * i), level, w)
        inc = rng.poisson(mean).astype(float)
        icu = rng.binomial(inc.astype(int), 0.2).astype(float)
        surv = np.exp(-np.arange(60) / 10.0)
        rows_inc.append(inc)
        rows_icu.append(icu)
        rows_hosp.append(np.convolve(inc, surv)[:n])
        rows_icu_stock.append(np.convolve(icu, np.exp(-np.arange(60) / 12.0))[:n])
    dep = {k: np.array(v) for k, v in (("inc_hosp", rows_inc), ("inc_icu", rows_icu),
                                        ("hosp", rows_hosp), ("icu", rows_icu_stock))}
    deps = list(DEPS)
    regions = sorted({r for r, _ in DEPS.values()})
    territories = [*deps, *regions, "FR"]
    data = {}
    for k, v in dep.items():
        reg = np.array([v[[DEPS[d][0] == r for d in deps]].sum(axis=0) for r in regions])
        data[k] = (("territory", "date"), np.vstack([v, reg, v.sum(axis=0, keepdims=True)]))
    data["stringency_index"] = (("territory", "date"), np.full((len(territories), n), 40.0))
    data["mobility_transit_stations"] = (("territory", "date"),
                                         rng.normal(-20, 3, (len(territories), n)))
    pops = [DEPS[d][1] for d in deps] + [
        sum(DEPS[d][1] for d in deps if DEPS[d][0] == r) for r in regions
    ] + [sum(p for _, p in DEPS.values())]
    return xr.Dataset(
        data,
        coords={
            "territory": territories,
            "date": dates,
            "territory_level": ("territory", ["department"] * 3 + ["region"] * 2 + ["country"]),
            "territory_parent": ("territory", [DEPS[d][0] for d in deps] + ["FR", "FR", ""]),
            "territory_name": ("territory", territories),
            "population": ("territory", np.array(pops, dtype=float)),
        },
        attrs={"vintage_id": f"synthetic-{seed}-{start}-{end}-{lockdown}-{effect}"},
    )


def synthetic_yearly(beds: dict[str, float]) -> xr.Dataset:
    """Yearly cube with ``icu_beds_adult`` dated 2019-12-31."""
    terrs = list(beds)
    return xr.Dataset(
        {"icu_beds_adult": (("territory", "date"), np.array([[beds[t]] for t in terrs]))},
        coords={"territory": terrs, "date": pd.DatetimeIndex(["2019-12-31"])},
    )


def empty_measures() -> pd.DataFrame:
    """A measures table with no rows: no measure ever (a territory-free world for unit tests)."""
    import io

    from scenarios.measures import load_measures

    return load_measures(io.StringIO(EMPTY_MEASURES_CSV))


def with_cases(ds: xr.Dataset, r_cases: dict[str, float], start: str = "2020-05-13",
               stop: str | None = None, level: float = 2000.0) -> xr.Dataset:
    """Add ``inc_cases`` for France and the régions: a renewal at a constant R per territory
    (France: the sum of its régions), from ``start`` (NaN before, as SI-DEP) to ``stop``
    (NaN after: a source that stopped). Départements get none, as in the real cube."""
    w = EpiParameters().generation_interval()
    dates = pd.DatetimeIndex(ds["date"].values)
    on = (dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(stop or dates[-1]))
    out = np.full((ds.sizes["territory"], len(dates)), np.nan)
    codes = [str(t) for t in ds["territory"].values]
    regions = [c for c in codes if c.startswith("R")]
    for c in regions:
        series = renewal_series(np.full(int(on.sum()), r_cases[c]), level, w)
        out[codes.index(c), on] = np.round(series)
    out[codes.index("FR"), on] = out[[codes.index(c) for c in regions]][:, on].sum(axis=0)
    return ds.assign(inc_cases=(("territory", "date"), out))
