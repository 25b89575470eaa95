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


#: The EPCI of the synthetic cube (Métropole de Lyon's SIREN code), inside département 69.
EPCI = {"200046977": ("69", 1_400_000.0)}


def _attrs(units: str, aggregation: str, count: bool = False, stock: bool = False) -> dict:
    return {"units": units, "description": "synthetic", "source": "synthetic",
            "licence": "none", "aggregation": aggregation, "count": int(count),
            "stock": int(stock)}


def signals_cube(periods: int = 300, start: str = "2020-09-01", seed: int = 1) -> dict:
    """The daily, weekly and yearly cubes of :func:`synthetic_cube` with the leading signals
    and epidemic indicators of issue 12 (names of docs/CUBE_CONTRACT.md) and one EPCI.

    Where each variable exists mimics the real sources: ``inc_cases``/``inc_tests`` and the
    rates derived from them for régions and France (no département daily cases), the EPCI's
    published incidence (all ages and 65+), vaccination and screening by département and
    summed up, R(t) everywhere (from cases where they exist, ``epidemic_basis`` 1, else from
    admissions, 2). Corsica (R94, 160,000 inhabitants) has daily cases below 10, to exercise
    small-count suppression. Returns ``{"daily": ds, "weekly": ds, "yearly": ds}``.
    """
    rng = np.random.default_rng(seed)
    base = synthetic_cube("daily", periods=periods, start=start, seed=seed)
    epci_code, (epci_parent, epci_pop) = next(iter(EPCI.items()))
    extra = xr.Dataset(coords={
        "territory": [epci_code], "date": base["date"].values,
        "territory_level": ("territory", ["epci"]),
        "territory_parent": ("territory", [epci_parent]),
        "territory_name": ("territory", ["Métropole de Lyon"]),
        "population": ("territory", [epci_pop])})
    daily = xr.concat([base, extra], dim="territory", data_vars="all", join="outer",
                      combine_attrs="override")
    codes = daily["territory"].values.tolist()
    level = dict(zip(codes, daily["territory_level"].values.tolist(), strict=True))
    pop = dict(zip(codes, daily["population"].values.tolist(), strict=True))
    n = len(daily["date"])
    t = np.arange(n)
    shape = (len(codes), n)

    def empty() -> np.ndarray:
        return np.full(shape, np.nan)

    cases, tests, inc7, inc65, pos7 = empty(), empty(), empty(), empty(), empty()
    wave = 0.5 + 3.0 * np.exp(-(((t - 0.45 * n) / (0.12 * n)) ** 2))  # per 10,000 a day
    for i, code in enumerate(codes):
        if level[code] in ("region", "country"):
            daily_cases = rng.poisson(wave * pop[code] / 10_000 * (0.02 if code == "R94" else 1))
            daily_tests = np.maximum(daily_cases * 12 + rng.poisson(3 if code == "R94" else 50,
                                                                     n), 1)
            cases[i], tests[i] = daily_cases, daily_tests
            c7 = pd.Series(daily_cases).rolling(7).sum().to_numpy()
            t7 = pd.Series(daily_tests).rolling(7).sum().to_numpy()
            inc7[i] = 1e5 * c7 / pop[code]
            pos7[i] = 100 * c7 / t7
        elif level[code] == "epci":
            inc7[i] = 7 * wave * 10 * 1.1
            inc65[i] = 7 * wave * 10 * 0.6
    vaccinated, coverage, screened, l452r = empty(), empty(), empty(), empty()
    ramp = np.clip((t - 0.5 * n) / (0.4 * n), 0, 1) * 0.75
    for i, code in enumerate(codes):
        if level[code] in ("department", "region", "country"):
            vaccinated[i] = np.round(ramp * pop[code])
            coverage[i] = 100 * vaccinated[i] / pop[code]
        if level[code] in ("department", "region", "country"):
            screened[i] = np.where(t > 0.6 * n, np.round(wave * pop[code] / 30_000), np.nan)
            l452r[i] = np.where(t > 0.6 * n, np.clip(100 * (t - 0.6 * n) / (0.2 * n), 0, 100),
                                np.nan)
    rt = 1 + 0.4 * np.sin(2 * np.pi * t / (0.5 * n))
    growth = np.log(rt) / 5.0
    doubling = np.where(np.abs(growth) > 1e-6, np.log(2) / np.where(growth == 0, 1, growth),
                        np.nan)
    basis = np.array([1.0 if level[c] in ("region", "country", "epci") else 2.0 for c in codes])
    icu = np.round(daily["hosp"].values * 0.25)
    variables = {
        "icu": (icu, _attrs("beds", "sum", count=True, stock=True)),
        "inc_cases": (cases, _attrs("positives/day", "sum", count=True)),
        "inc_tests": (tests, _attrs("tests/day", "sum", count=True)),
        "incidence_rate_7d": (inc7, _attrs("positives/100,000 inhabitants/7 days", "none",
                                           stock=True)),
        "incidence_rate_7d_65_plus": (inc65, _attrs("positives/100,000 inhabitants aged 65+"
                                                    "/7 days", "none", stock=True)),
        "positivity_rate_7d": (pos7, _attrs("%", "none", stock=True)),
        "vaccinated_dose1": (vaccinated, _attrs("persons", "sum", count=True, stock=True)),
        "vaccination_coverage_dose1": (coverage, _attrs("% of population", "none", stock=True)),
        "screened_positive_tests": (screened, _attrs("tests/7 days", "sum", count=True,
                                                     stock=True)),
        "variant_share_l452r": (l452r, _attrs("%", "none", stock=True)),
        "rt": (np.tile(rt, (len(codes), 1)), _attrs("dimensionless", "none")),
        "rt_lower": (np.tile(rt * 0.85, (len(codes), 1)), _attrs("dimensionless", "none")),
        "rt_upper": (np.tile(rt * 1.15, (len(codes), 1)), _attrs("dimensionless", "none")),
        "growth_rate": (np.tile(growth, (len(codes), 1)), _attrs("per day", "none")),
        "doubling_time": (np.tile(doubling, (len(codes), 1)), _attrs("days", "none")),
        "epidemic_basis": (np.repeat(basis[:, None], n, axis=1), _attrs("code", "none")),
    }
    for name, (values, attrs) in variables.items():
        daily[name] = (("territory", "date"), values)
        daily[name].attrs = attrs
    for name in ("inc_hosp", "inc_icu", "hosp"):
        daily[name].attrs.update(count=1)
    daily["stringency_index"].attrs.update(units="index 0-100", aggregation="national")
    weekly = daily[["inc_hosp", "inc_cases"]].resample(date="W-SAT", label="right",
                                                         closed="right").sum(min_count=7)
    weekly = weekly.transpose("territory", "date")
    for name in weekly.data_vars:
        weekly[name].attrs = dict(daily[name].attrs)
    beds = {"department": 60.0, "region": 150.0, "country": 400.0}
    years = pd.to_datetime(["2020-01-01", "2021-01-01"])
    yearly = xr.Dataset(
        {"icu_beds_adult": (("territory", "date"), np.array(
            [[beds.get(level[c], np.nan)] * 2 for c in codes])),
         "population_65_plus": (("territory", "date"), np.array(
             [[0.2 * pop[c]] * 2 for c in codes]))},
        coords={"territory": codes, "date": years,
                **{k: ("territory", daily[k].values) for k in (
                    "territory_level", "territory_parent", "territory_name", "population")}})
    yearly["icu_beds_adult"].attrs = _attrs("beds", "sum")
    yearly["population_65_plus"].attrs = _attrs("inhabitants", "sum")
    return {"daily": daily, "weekly": weekly, "yearly": yearly}


#: Cube variables each leading source feeds (a truncated source loses all of them).
SOURCE_VARIABLES: dict[str, tuple[str, ...]] = {
    "cases": ("inc_cases", "incidence_rate_7d", "positivity_rate_7d"),
    "tests": ("inc_tests", "positivity_rate_7d"),
    "vaccination": ("vaccinated_dose1", "vaccination_coverage_dose1"),
    "screening": ("screened_positive_tests", "variant_share_e484k", "variant_share_l452r"),
}


def add_leading_signals(ds: xr.Dataset, seed: int = 1) -> xr.Dataset:
    """The synthetic cube with the leading signals of the cube contract (weekly or daily).

    Cases lead admissions by two periods (France and régions only, as SI-DEP), tests grow
    more slowly than cases (positivity moves with the wave), vaccination coverage by
    département and up from the middle of the history, and variant shares (old screening
    scheme only) by département and up over the last third.
    """
    rng = np.random.default_rng(seed)
    ds = ds.copy()
    n_t, n_d = ds.sizes["territory"], ds.sizes["date"]
    levels = ds["territory_level"].values
    pop = ds["population"].values[:, None]
    hosp = ds["inc_hosp"].values
    lead = np.concatenate([hosp[:, 2:], np.repeat(hosp[:, -1:], 2, axis=1)], axis=1)
    cases = np.round(lead * 40 * rng.lognormal(0, 0.05, (n_t, n_d)))
    tests = np.round(20 * pop / 1e3 + 5 * cases)
    regional = (levels != "department")[:, None]
    start = max(2, n_d // 8)
    sidep = regional & (np.arange(n_d) >= start)[None, :]
    inc_cases = np.where(sidep, cases, np.nan)
    inc_tests = np.where(sidep, tests, np.nan)
    vac_start = n_d // 2
    coverage = np.clip(np.arange(n_d) - vac_start, 0, None) * 60.0 / max(1, n_d - vac_start)
    coverage = np.where(np.arange(n_d) >= vac_start, coverage, np.nan)
    coverage = np.tile(coverage, (n_t, 1)) * rng.uniform(0.9, 1.1, (n_t, 1))
    screen = (np.arange(n_d) >= 2 * n_d // 3)[None, :]
    share = np.clip(5 + 90 * (np.arange(n_d) - 2 * n_d // 3) / max(1, n_d // 3), 0, 100)
    l452r = np.where(screen, np.tile(share, (n_t, 1)), np.nan)
    e484k = np.where(screen, 100 - l452r, np.nan)
    variables = {
        "inc_cases": inc_cases,
        "inc_tests": inc_tests,
        "incidence_rate_7d": inc_cases / pop * 1e5,
        "positivity_rate_7d": 100 * inc_cases / inc_tests,
        "vaccinated_dose1": np.round(coverage / 100 * pop),
        "vaccination_coverage_dose1": coverage,
        "screened_positive_tests": np.where(screen, np.round(cases * 1.3), np.nan),
        "variant_share_e484k": e484k,
        "variant_share_l452r": l452r,
    }
    for name, values in variables.items():
        ds[name] = (("territory", "date"), values)
        ds[name].attrs = {"units": "", "description": name, "source": "synthetic",
                          "licence": "none", "aggregation": "sum"}
    return ds
