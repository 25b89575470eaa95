"""Build the territorial cube from validated source results.

One :class:`xarray.Dataset` per frequency (``daily``, ``weekly``, ``quarterly``, ``yearly``) with
dims ``(territory, date)`` and one data variable per indicator. Coordinates hold what is fixed
(territory level, parent, name, population); attrs hold units, source, licence.

Steps, in order:

1. merge the tidy frames (a source listed earlier wins where two publish the same value);
2. rebuild ``hosp`` and ``icu`` where they were not published (:mod:`features.occupancy`);
3. aggregate up the hierarchy where a territory has no published value of an indicator: counts
   by sum over départements (every code, so France = the sum of all 101 départements and the
   collectivities that report), rates by population-weighted mean, national indices repeated
   for every territory;
4. weekly sums of daily counts (complete Sunday–Saturday weeks, labelled by the Saturday);
5. pivot to arrays.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from features import occupancy
from features.indicators import FREQUENCIES, IndicatorSpec
from features.sources.base import SourceResult
from features.territories import FRANCE, Territories

DATE_FREQ = {"daily": "D", "weekly": "W-SAT", "quarterly": "QE", "yearly": "YS"}


def merge_results(results: Iterable[SourceResult]) -> tuple[pd.DataFrame, dict[str, IndicatorSpec]]:
    """Concatenate tidy frames, first source winning on (territory, date, indicator)."""
    frames, specs = [], {}
    for result in results:
        frames.append(result.frame)
        for spec in result.indicators:
            specs.setdefault(spec.name, spec)
    if not frames:
        return pd.DataFrame(columns=["territory", "date", "indicator", "value"]), specs
    tidy = pd.concat(frames, ignore_index=True)
    tidy = tidy.drop_duplicates(["territory", "date", "indicator"], keep="first")
    present = set(pd.unique(tidy["indicator"]))
    return tidy, {name: spec for name, spec in specs.items() if name in present}


def _pivot(tidy: pd.DataFrame, indicator: str, territories: list[str],
           dates: pd.DatetimeIndex) -> np.ndarray:
    rows = tidy[tidy["indicator"] == indicator] if indicator is not None else tidy
    out = np.full((len(territories), len(dates)), np.nan)
    t_idx = pd.Index(territories).get_indexer(rows["territory"])
    d_idx = dates.get_indexer(rows["date"])
    ok = (t_idx >= 0) & (d_idx >= 0)
    out[t_idx[ok], d_idx[ok]] = rows["value"].to_numpy()[ok]
    return out


def rebuild_occupancy(tidy: pd.DataFrame, territories: Territories
                      ) -> tuple[pd.DataFrame, dict]:
    """Add rebuilt ``hosp``/``icu`` rows (and ``*_origin`` rows) for every département."""
    flows = tidy[tidy["indicator"].isin(["inc_hosp", "inc_discharge", "inc_death", "inc_icu"])]
    if flows.empty:
        return tidy, {}
    deps = sorted(pd.unique(flows["territory"]))
    dates = pd.date_range(flows["date"].min(), flows["date"].max(), freq="D")
    arrays = {name: _pivot(tidy, name, deps, dates)
              for name in ("inc_hosp", "inc_discharge", "inc_death", "inc_icu", "hosp", "icu")}
    net = arrays["inc_hosp"] - arrays["inc_discharge"] - arrays["inc_death"]
    hosp = occupancy.rebuild_by_accounting(net, arrays["hosp"], arrays["inc_hosp"])
    icu = occupancy.rebuild_by_convolution(arrays["inc_icu"], arrays["icu"])
    rows = []
    territory_col = np.repeat(np.array(deps, dtype=object), len(dates))
    date_col = np.tile(dates.values, len(deps))
    for name, rebuilt in (("hosp", hosp), ("icu", icu)):
        keep_cells = (rebuilt.origin.ravel() > 0) & ~np.isnan(rebuilt.values.ravel())
        for values, indicator in ((rebuilt.values, name), (rebuilt.origin, f"{name}_origin")):
            rows.append(pd.DataFrame({
                "territory": territory_col[keep_cells], "date": date_col[keep_cells],
                "indicator": indicator,
                "value": values.ravel().astype("float64")[keep_cells]}))
    rebuilt_rows = pd.concat(rows, ignore_index=True)
    # Published rows outside the flows' date range survive; inside it the rebuilt table holds them.
    keep = ~(tidy["indicator"].isin(["hosp", "icu"]) & tidy["territory"].isin(deps)
             & tidy["date"].between(dates[0], dates[-1]))
    merged = pd.concat([tidy[keep], rebuilt_rows[tidy.columns]], ignore_index=True)
    return merged, {"hosp": hosp.parameters, "icu": icu.parameters}


def aggregate_hierarchy(tidy: pd.DataFrame, specs: dict[str, IndicatorSpec],
                        territories: Territories) -> pd.DataFrame:
    """Fill régions and France from départements where they have no published value."""
    level_of = territories.table["level"].to_dict()
    by_indicator = dict(tuple(tidy.groupby("indicator", sort=False)))
    parts = [tidy]
    for name, spec in specs.items():
        rows = by_indicator.get(name)
        if rows is None or spec.aggregation in ("none", "national"):
            continue
        published = set(pd.unique(rows["territory"]))
        base_codes = {c for c in published if level_of[c] in ("department", "collectivity")}
        base = rows[rows["territory"].isin(base_codes)]
        if base.empty:
            continue
        how = "sum" if spec.aggregation == "sum" else "population_mean"
        for target in ("region", "country"):
            agg = territories.aggregate(base, how, target)
            parts.append(agg[~agg["territory"].isin(published)])
    out = pd.concat(parts, ignore_index=True)
    # National indicators: France's value, repeated for every territory of the cube.
    national = [n for n, s in specs.items() if s.aggregation == "national"]
    if national:
        present = [c for c in pd.unique(out["territory"]) if c != FRANCE]
        fr = out[out["indicator"].isin(national) & (out["territory"] == FRANCE)]
        copies = [fr.assign(territory=code) for code in present]
        out = pd.concat([out, *copies], ignore_index=True)
    return out


def weekly_from_daily(tidy: pd.DataFrame, specs: dict[str, IndicatorSpec]) -> pd.DataFrame:
    """Weekly sums of daily counts over complete Sunday–Saturday weeks, dated by the Saturday."""
    names = [n for n, s in specs.items() if s.frequency == "daily" and s.aggregation == "sum"
             and not n.endswith("_origin") and n not in ("hosp", "icu")]
    rows = tidy[tidy["indicator"].isin(names)]
    if rows.empty:
        return rows
    saturday = rows["date"] + pd.to_timedelta((5 - rows["date"].dt.dayofweek) % 7, unit="D")
    grouped = rows.assign(date=saturday).groupby(["territory", "date", "indicator"],
                                                 observed=True)["value"]
    weekly = grouped.agg(["sum", "count"]).reset_index()
    weekly = weekly[weekly["count"] == 7]
    return weekly.rename(columns={"sum": "value"})[["territory", "date", "indicator", "value"]]


def to_dataset(tidy: pd.DataFrame, specs: dict[str, IndicatorSpec], frequency: str,
               territories: Territories) -> xr.Dataset:
    """Pivot the tidy rows of one frequency into a Dataset ``(territory, date)``."""
    by_indicator = dict(tuple(tidy.groupby("indicator", sort=True)))
    names = [n for n in by_indicator if n in specs]
    if not names:
        return xr.Dataset(attrs={"frequency": frequency})
    codes = territories.closure(pd.unique(tidy["territory"]))
    start, end = tidy["date"].min(), tidy["date"].max()
    dates = pd.date_range(start, end, freq=DATE_FREQ[frequency])
    if frequency == "quarterly":
        dates = dates.normalize()
    meta = territories.table.loc[codes]
    data_vars = {}
    for name in names:
        arr = _pivot(by_indicator[name], None, codes, dates)
        spec = specs[name]
        if name.endswith("_origin"):
            arr = np.nan_to_num(arr).astype(np.int8)
        data_vars[name] = (("territory", "date"), arr, spec.attrs())
    ds = xr.Dataset(
        data_vars,
        coords={
            "territory": ("territory", np.array(codes, dtype=object)),
            "date": ("date", dates.values.astype("datetime64[ns]")),
            "territory_level": ("territory", meta["level"].to_numpy(dtype=object)),
            "territory_parent": ("territory", meta["parent"].to_numpy(dtype=object)),
            "territory_name": ("territory", meta["name"].to_numpy(dtype=object)),
            "population": ("territory", meta["population"].to_numpy(dtype=float),
                           {"units": "inhabitants", "source": "INSEE, legal population 2020"}),
        },
        attrs={"frequency": frequency},
    )
    return ds


def build_cube(results: list[SourceResult], territories: Territories
               ) -> tuple[dict[str, xr.Dataset], dict]:
    """All datasets of a vintage, plus the parameters fitted on the way (for the catalog)."""
    tidy, specs = merge_results(results)
    tidy["date"] = tidy["date"].astype("datetime64[ns]")
    tidy, fitted = rebuild_occupancy(tidy, territories)
    for name in ("hosp", "icu"):
        if name in specs:
            specs[f"{name}_origin"] = IndicatorSpec(
                f"{name}_origin", "daily", "1 = published by SPF, 2 = rebuilt from flows",
                f"where the {name} value comes from", specs[name].source, specs[name].licence,
                "none")
    tidy = aggregate_hierarchy(tidy, specs, territories)
    freq_of = {name: spec.frequency for name, spec in specs.items()}
    frequency_col = tidy["indicator"].map(freq_of)
    weekly_extra = weekly_from_daily(tidy, specs)
    weekly_specs = {n: IndicatorSpec(n, "weekly", specs[n].units.replace("/day", "/week"),
                                     specs[n].description + " (weekly sum, Sunday–Saturday)",
                                     specs[n].source, specs[n].licence, "sum", count=True)
                    for n in pd.unique(weekly_extra["indicator"])}
    datasets = {}
    for frequency in FREQUENCIES:
        names = {n for n, f in freq_of.items() if f == frequency}
        rows = tidy[frequency_col.eq(frequency).to_numpy()]
        freq_specs = {n: specs[n] for n in names}
        if frequency == "weekly":
            rows = pd.concat([rows, weekly_extra], ignore_index=True)
            freq_specs.update(weekly_specs)
        if len(rows):
            datasets[frequency] = to_dataset(rows, freq_specs, frequency, territories)
    return datasets, fitted
