"""Build the territorial cube from validated source results.

One :class:`xarray.Dataset` per frequency (``daily``, ``weekly``, ``quarterly``, ``yearly``) with
dims ``(territory, date)`` and one data variable per indicator. Coordinates hold what is fixed
(territory level, parent, name, population); attrs hold units, source, licence.

Steps, in order:

1. merge the tidy frames (a source listed earlier wins where two publish the same value) and
   pivot each indicator once into an array ``(territory, date)``; everything after works on
   arrays;
2. rebuild ``hosp`` and ``icu`` where they were not published (:mod:`features.occupancy`);
3. aggregate up the hierarchy where a territory has no published value of an indicator: counts
   by sum over départements, rates by population-weighted mean, national indices repeated for
   every territory. A computed total is served only on the dates when **all its children**
   report the indicator (every département of the registry under it, plus, for France, the
   collectivités that report the indicator at all in the vintage); otherwise it is absent, and
   the variable's ``computed_totals`` attribute says how many children did report
   (:func:`totals_coverage`). A published value always wins and is never recomputed;
4. weekly values of daily indicators: sums of counts over complete Sunday–Saturday weeks,
   means of levels (mobility, policy indices); each week labelled by its Saturday;
5. (daily, before 4) derived indicators where their inputs exist, published values first
   (:func:`derive_indicators`: 7-day incidence and positivity, vaccination coverage, variant
   shares, and the départements' incidence estimated from screening); stocks and 7-day
   windows take the Saturday's value in the weekly cube;
6. (daily, after 5) R(t), growth rate, doubling time from cases or admissions
   (:func:`features.epidemic.add_indicators`; never summed into the weekly cube).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits

from features import epidemic, incidence_estimate, occupancy
from features.indicators import (
    DERIVED,
    FREQUENCIES,
    INCIDENCE_RATE_7D,
    INCIDENCE_RATE_7D_ESTIMATED,
    MUTATIONS,
    POSITIVITY_RATE_7D,
    VACCINATION_COVERAGE_DOSE1,
    IndicatorSpec,
    screened_absent,
    screened_present,
    variant_share,
)
from features.sources import spf_screening
from features.sources.contract import SourceResult
from features.territories import FRANCE, Territories, ancestor_at

#: Days of a week that must be published for a weekly mean of a daily level.
MIN_DAYS_FOR_MEAN = 4
DATE_FREQ = {"daily": "D", "weekly": "W-SAT", "quarterly": "QE", "yearly": "YS"}
BASE_LEVELS = ("department", "collectivity")
#: Levels whose values Vigie may compute by summing (or averaging) their children.
TOTAL_LEVELS = ("region", "country")
#: Attribute of a variable describing the totals Vigie computed for it (JSON, see
#: :class:`TotalsCoverage`).
COVERAGE_ATTR = "computed_totals"


@dataclass
class TotalsCoverage:
    """Which totals of one indicator Vigie computed, and how complete each cell was.

    ``children``: computed parent code → number of children its total needs (m);
    ``incomplete``: parent code → {ISO date: children that reported (n, 0 < n < m)} for the
    dates the total is absent because some children did not report. A computed parent cell
    with a value had all m children; one absent and not listed had none. Stored in the
    variable's attrs as JSON (``computed_totals``); ``members`` (the children's codes) is kept
    for the weekly sums and not stored.
    """

    children: dict[str, int] = field(default_factory=dict)
    incomplete: dict[str, dict[str, int]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)

    def to_attr(self) -> str:
        return json.dumps({"children": self.children, "incomplete": self.incomplete},
                          separators=(",", ":"), sort_keys=True)


def totals_coverage(var: xr.DataArray) -> dict | None:
    """The ``computed_totals`` of a cube variable as a dict (``children``, ``incomplete``), or
    None when Vigie computed no total of it (every parent value is published, or the indicator
    is not aggregated)."""
    text = var.attrs.get(COVERAGE_ATTR)
    return json.loads(text) if text else None


def merge_results(results: Iterable[SourceResult]
                  ) -> tuple[pd.DataFrame, dict[str, IndicatorSpec]]:
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
    tidy["date"] = tidy["date"].astype("datetime64[ns]")
    present = set(pd.unique(tidy["indicator"]))
    return tidy, {name: spec for name, spec in specs.items() if name in present}


def _pivot(rows: pd.DataFrame, territories: list[str], dates: pd.DatetimeIndex) -> np.ndarray:
    """Tidy rows of one indicator → array ``(territory, date)``, NaN where absent."""
    out = np.full((len(territories), len(dates)), np.nan)
    t_idx = pd.Index(territories).get_indexer(rows["territory"])
    d_idx = dates.get_indexer(rows["date"])
    ok = (t_idx >= 0) & (d_idx >= 0)
    out[t_idx[ok], d_idx[ok]] = rows["value"].to_numpy()[ok]
    return out


class Frame:
    """The arrays of one frequency under construction: shared territory and date axes."""

    def __init__(self, codes: list[str], dates: pd.DatetimeIndex, territories: Territories):
        self.codes = codes
        self.dates = dates
        self.territories = territories
        self.meta = territories.table.loc[codes]
        self.arrays: dict[str, np.ndarray] = {}
        self.specs: dict[str, IndicatorSpec] = {}
        self.coverage: dict[str, TotalsCoverage] = {}
        self.index = {code: i for i, code in enumerate(codes)}

    @functools.cached_property
    def date_labels(self) -> list[str]:
        """ISO dates of the date axis (coverage keys)."""
        return list(self.dates.strftime("%Y-%m-%d"))

    def rows_at(self, levels: Iterable[str]) -> np.ndarray:
        return np.flatnonzero(self.meta["level"].isin(list(levels)).to_numpy())


def _frequency_frame(tidy: pd.DataFrame, specs: dict[str, IndicatorSpec], frequency: str,
                     territories: Territories, extra_codes: Iterable[str] = ()) -> Frame:
    codes = territories.closure([*pd.unique(tidy["territory"]), *extra_codes])
    dates = pd.date_range(tidy["date"].min(), tidy["date"].max(), freq=DATE_FREQ[frequency])
    frame = Frame(codes, dates.normalize(), territories)
    for name, rows in tidy.groupby("indicator", sort=True):
        if name in specs:
            frame.arrays[name] = _pivot(rows, codes, frame.dates)
            frame.specs[name] = specs[name]
    return frame


def rebuild_occupancy(frame: Frame) -> dict:
    """Fill ``hosp``/``icu`` for every département and add ``*_origin`` arrays."""
    needed = ("inc_hosp", "inc_discharge", "inc_death", "inc_icu")
    if not all(n in frame.arrays for n in needed):
        return {}
    base = frame.rows_at(BASE_LEVELS)
    flows = {n: frame.arrays[n][base] for n in needed}
    reporting = ~np.isnan(flows["inc_hosp"]).all(axis=1)
    rows = base[reporting]
    days = ~np.isnan(flows["inc_hosp"][reporting]).all(axis=0)
    span = slice(np.flatnonzero(days)[0], np.flatnonzero(days)[-1] + 1)
    get = {n: frame.arrays[n][rows][:, span] for n in needed}
    fitted = {}
    for name, rebuild in (
        ("hosp", lambda pub: occupancy.rebuild_by_accounting(
            get["inc_hosp"] - get["inc_discharge"] - get["inc_death"], pub, get["inc_hosp"])),
        ("icu", lambda pub: occupancy.rebuild_by_convolution(get["inc_icu"], pub)),
    ):
        full = frame.arrays.setdefault(name, np.full((len(frame.codes), len(frame.dates)),
                                                     np.nan))
        result = rebuild(full[rows][:, span])
        block = full[rows]
        block[:, span] = result.values
        full[rows] = block
        origin = np.zeros(full.shape, dtype=np.int8)
        origin[~np.isnan(full)] = occupancy.PUBLISHED  # published outside the flows' span
        sub = origin[rows]
        sub[:, span] = result.origin
        origin[rows] = sub
        frame.arrays[f"{name}_origin"] = origin
        spec = frame.specs.get(name)
        if spec is None:
            continue
        frame.specs[f"{name}_origin"] = IndicatorSpec(
            f"{name}_origin", "daily", "1 = published by SPF, 2 = rebuilt from flows",
            f"where the {name} value comes from (0 = not available)", spec.source, spec.licence,
            "none")
        fitted[name] = {**result.parameters,
                        "territories": [frame.codes[r] for r in rows]}
    return fitted


def registry_children(territories: Territories, level: str) -> dict[str, list[str]]:
    """Parent code at ``level`` → the départements and collectivités of the registry under it."""
    table = territories.table
    parent_of, level_of = table["parent"].to_dict(), table["level"].to_dict()
    out: dict[str, list[str]] = {}
    for code in table.index[table["level"].isin(BASE_LEVELS).to_numpy()]:
        parent = ancestor_at(code, level, parent_of, level_of)
        if parent:
            out.setdefault(parent, []).append(code)
    return out


def _member_matrix(frame: Frame, base: np.ndarray, members: list[list[str]]) -> np.ndarray:
    """0/1 matrix (parent × base row) of the members present in the frame."""
    position = {frame.codes[row]: j for j, row in enumerate(base)}
    matrix = np.zeros((len(members), len(base)))
    for i, codes in enumerate(members):
        for code in codes:
            j = position.get(code)
            if j is not None:
                matrix[i, j] = 1.0
    return matrix


def _record_coverage(frame: Frame, name: str, parents: np.ndarray, members: list[list[str]],
                     count: np.ndarray) -> None:
    """Note, for the computed ``parents`` rows, the dates their total is absent for want of
    children (``count``: children reporting, parent × date)."""
    coverage = frame.coverage.setdefault(name, TotalsCoverage())
    values = frame.arrays[name]
    labels = frame.date_labels
    for i, row in enumerate(parents):
        code, need = frame.codes[row], len(members[i])
        coverage.children[code] = need
        coverage.members[code] = members[i]
        gaps = np.flatnonzero(np.isnan(values[row]) & (count[i] > 0) & (count[i] < need))
        if len(gaps):
            coverage.incomplete[code] = {labels[j]: int(count[i, j]) for j in gaps}
        else:
            coverage.incomplete.pop(code, None)


@threadpool_limits.wrap(limits=1, user_api="blas")
def aggregate_hierarchy(frame: Frame) -> None:
    """Fill régions and France from their children where they have no published value.

    A total is computed on a date only when all its children report the indicator that date:
    every département of the registry under it (one missing from the cube counts as not
    reporting) and, for France, each collectivité that reports the indicator on some date of
    the vintage (national sources cover collectivités unevenly: SPF's hospital data has
    Saint-Martin, not Saint-Pierre-et-Miquelon; a collectivité a source never publishes is taken
    as outside that source). A city indicator reported by one département thus never becomes
    its région's or France's value. EPCI and communes are never summed. Coverage (n of m) of
    every computed total goes to ``frame.coverage`` (the variable's ``computed_totals``).

    BLAS runs single-threaded here: these products are small (régions × départements × days),
    and OpenBLAS threads made each one 100× slower on a busy 2-core machine (18 ms vs 0.2 ms).
    """
    base = frame.rows_at(BASE_LEVELS)
    population = frame.meta["population"].to_numpy(dtype=float)[base]
    levels = frame.meta["level"].to_numpy()
    is_department = levels[base] == "department"
    children = {level: registry_children(frame.territories, level) for level in TOTAL_LEVELS}
    table = frame.territories.table
    departments = set(table.index[(table["level"] == "department").to_numpy()])
    for name, spec in frame.specs.items():
        arr = frame.arrays[name]
        if spec.aggregation == "national":
            if FRANCE in frame.index:
                arr[:] = arr[frame.index[FRANCE]][None, :]
            continue
        if spec.aggregation not in ("sum", "population_mean") or name.endswith("_origin"):
            continue
        x = arr[base]
        observed = ~np.isnan(x)
        if not observed.any():
            continue
        reporting = {frame.codes[row] for row in base[observed.any(axis=1) & ~is_department]}
        filled = np.nan_to_num(x)
        for level in TOTAL_LEVELS:
            parents = frame.rows_at([level])
            parents = parents[np.isnan(arr[parents]).all(axis=1)]  # published rows win
            if not len(parents):
                continue
            members = [[c for c in children[level].get(frame.codes[p], [])
                        if c in departments or c in reporting] for p in parents]
            m = _member_matrix(frame, base, members)
            need = np.array([len(codes) for codes in members], dtype=float)[:, None]
            count = m @ observed
            complete = (count == need) & (need > 0)
            if spec.aggregation == "sum":
                value = np.where(complete, m @ filled, np.nan)
            else:
                w = m * np.nan_to_num(population)[None, :]
                weight = w @ observed
                with np.errstate(invalid="ignore", divide="ignore"):
                    value = np.where(complete & (weight > 0), (w @ filled) / weight, np.nan)
            arr[parents] = value
            _record_coverage(frame, name, parents, members, count)


def weekly_coverage(frame: Frame, daily: Frame, names: Iterable[str]) -> None:
    """Coverage of the weekly values of daily indicators: a parent's week is complete when each
    child the daily total needs has its own weekly value (all 7 days, or the Saturday)."""
    base = frame.rows_at(BASE_LEVELS)
    for name in names:
        source = daily.coverage.get(name)
        if source is None or name not in frame.arrays:
            continue
        parents = np.array([frame.index[c] for c in source.children if c in frame.index])
        if not len(parents):
            continue
        members = [source.members[frame.codes[p]] for p in parents]
        observed = ~np.isnan(frame.arrays[name][base])
        _record_coverage(frame, name, parents, members,
                         _member_matrix(frame, base, members) @ observed)


def rolling_7d(arr: np.ndarray) -> np.ndarray:
    """Sum over the 7 days ending each date, NaN unless all 7 days have a value."""
    # A sum of whole counts: remove the rounding the running sums leave behind.
    return np.round(epidemic.trailing_sum(arr, 7), 6)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, scale: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, scale * numerator / denominator, np.nan)


def derive_indicators(frame: Frame) -> None:
    """Add the derived indicators of :data:`features.indicators.DERIVED` wherever their inputs
    exist (after aggregation, so at every level), filling only cells without a published value.

    * ``incidence_rate_7d`` = 7-day ``inc_cases`` / ``population`` × 100,000;
    * ``positivity_rate_7d`` = 100 × 7-day ``inc_cases`` / 7-day ``inc_tests``;
    * ``vaccination_coverage_dose1`` = 100 × ``vaccinated_dose1`` / ``population``;
    * ``variant_share_<m>`` = 100 × present / (present + absent) screened positive tests;
    * ``incidence_rate_7d_estimated`` where ``incidence_rate_7d`` is still missing (after the
      above): ``screened_positive_tests`` × the région's persons per positive test over the same
      window / ``population`` × 100,000 (:mod:`features.incidence_estimate`).
    """
    population = frame.meta["population"].to_numpy(dtype=float)[:, None]
    arrays = frame.arrays
    derived: dict[str, np.ndarray] = {}
    if "inc_cases" in arrays:
        cases_7d = rolling_7d(arrays["inc_cases"])
        derived[INCIDENCE_RATE_7D.name] = _ratio(cases_7d, population, 1e5)
        if "inc_tests" in arrays:
            derived[POSITIVITY_RATE_7D.name] = _ratio(cases_7d, rolling_7d(arrays["inc_tests"]),
                                                      100.0)
    if "vaccinated_dose1" in arrays:
        derived[VACCINATION_COVERAGE_DOSE1.name] = _ratio(arrays["vaccinated_dose1"],
                                                          population, 100.0)
    for mutation in MUTATIONS:
        present, absent = screened_present(mutation), screened_absent(mutation)
        if present in arrays and absent in arrays:
            derived[variant_share(mutation)] = _ratio(arrays[present],
                                                      arrays[present] + arrays[absent], 100.0)
    for name, values in derived.items():
        if np.isnan(values).all():
            continue
        published = arrays.get(name)
        arrays[name] = values if published is None else np.where(np.isnan(published), values,
                                                                   published)
        frame.specs.setdefault(name, DERIVED[name])
    estimated = _incidence_from_screening(frame, cases_7d) if "inc_cases" in arrays else None
    if estimated is not None and not np.isnan(estimated).all():
        arrays[INCIDENCE_RATE_7D_ESTIMATED.name] = estimated
        frame.specs[INCIDENCE_RATE_7D_ESTIMATED.name] = INCIDENCE_RATE_7D_ESTIMATED


def _incidence_from_screening(frame: Frame, cases_7d: np.ndarray) -> np.ndarray | None:
    """``incidence_rate_7d_estimated`` of every territory under a région that has screened
    positive tests and no ``incidence_rate_7d`` that day; None without screening.

    ``cases_7d``: (territory, date) positive persons over the 7 days ending each date."""
    arrays = frame.arrays
    if "screened_positive_tests" not in arrays:
        return None
    tests = arrays["screened_positive_tests"]
    region = np.array([frame.index.get(frame.territories.ancestor_at(code, "region"), -1)
                       for code in frame.codes])  # a région is its own
    rows = np.flatnonzero((region >= 0) & ~np.isnan(tests).all(axis=1))
    out = np.full(tests.shape, np.nan)
    if not len(rows):
        return out
    ratio = incidence_estimate.persons_per_test(cases_7d[region[rows]], tests[region[rows]])
    population = frame.meta["population"].to_numpy(dtype=float)[rows]
    out[rows] = incidence_estimate.estimate(tests[rows], ratio, population)
    own = arrays.get(INCIDENCE_RATE_7D.name)
    if own is not None:
        out[~np.isnan(own)] = np.nan
    return out


def weekly_from_daily(daily: Frame) -> tuple[dict[str, np.ndarray], pd.DatetimeIndex,
                                                dict[str, IndicatorSpec]]:
    """Weekly values of daily indicators, Sunday–Saturday weeks dated by the Saturday.

    Counts (admissions, deaths…) are summed over complete weeks only. Levels that are not
    counts (mobility, policy indices) are averaged over the days published, when at least
    :data:`MIN_DAYS_FOR_MEAN` are: Google left gaps on small départements' quiet days, and a
    weekly model wants last week's mobility beside last week's admissions. Stocks
    (``IndicatorSpec.stock``: beds occupied, cumulative persons vaccinated, counts and rates over
    the 7-day window ending that day) are never summed: the week takes its Saturday's value,
    which for a 7-day window is the week's own total.
    """
    week_end = daily.dates + pd.to_timedelta((5 - daily.dates.dayofweek) % 7, unit="D")
    weeks = pd.DatetimeIndex(pd.unique(week_end))
    group = weeks.get_indexer(week_end)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:] - 1, len(daily.dates) - 1] if len(starts) else starts
    saturday = daily.dates[ends].dayofweek == 5
    arrays, specs = {}, {}
    for name, spec in daily.specs.items():
        if spec.stock:
            arrays[name] = np.where(saturday[None, :], daily.arrays[name][:, ends], np.nan)
            specs[name] = IndicatorSpec(name, "weekly", spec.units,
                                        f"{spec.description} (value on the Saturday ending the "
                                        "week)", spec.source, spec.licence, spec.aggregation,
                                        count=spec.count, stock=True)
            continue
        summed = spec.aggregation == "sum" and spec.count
        averaged = spec.aggregation in ("population_mean", "national") and not spec.count
        if not (summed or averaged):
            continue
        arr = daily.arrays[name]
        total = np.add.reduceat(np.nan_to_num(arr), starts, axis=1)
        count = np.add.reduceat((~np.isnan(arr)).astype(int), starts, axis=1)
        if summed:
            arrays[name] = np.where(count == 7, total, np.nan)
            units, how = spec.units.replace("/day", "/week"), "weekly sum"
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                arrays[name] = np.where(count >= MIN_DAYS_FOR_MEAN, total / count, np.nan)
            units, how = spec.units, "weekly mean"
        specs[name] = IndicatorSpec(name, "weekly", units,
                                    f"{spec.description} ({how}, Sunday–Saturday)",
                                    spec.source, spec.licence, spec.aggregation,
                                    count=spec.count)
    return arrays, weeks, specs


def to_dataset(frame: Frame, frequency: str) -> xr.Dataset:
    meta = frame.meta
    data_vars = {}
    for name in sorted(frame.arrays):
        if name not in frame.specs:
            continue
        attrs = frame.specs[name].attrs()
        if name in frame.coverage:
            attrs[COVERAGE_ATTR] = frame.coverage[name].to_attr()
        data_vars[name] = (("territory", "date"), frame.arrays[name], attrs)
    return xr.Dataset(
        data_vars,
        coords={
            "territory": ("territory", np.array(frame.codes, dtype=object)),
            "date": ("date", frame.dates.values.astype("datetime64[ns]")),
            "territory_level": ("territory", meta["level"].to_numpy(dtype=object)),
            "territory_parent": ("territory", meta["parent"].to_numpy(dtype=object)),
            "territory_name": ("territory", meta["name"].to_numpy(dtype=object)),
            "population": ("territory", meta["population"].to_numpy(dtype=float),
                           {"units": "inhabitants", "source": "INSEE, legal population 2020"}),
        },
        attrs={"frequency": frequency},
    )


def build_cube(results: list[SourceResult], territories: Territories
               ) -> tuple[dict[str, xr.Dataset], dict]:
    """All datasets of a vintage, plus the parameters fitted on the way (for the catalog)."""
    # The two variant-screening schemes overlap in Nov.–Dec. 2021: their rule, then the merge.
    tidy, specs = merge_results(spf_screening.combine_schemes(results))
    frequency_of = tidy["indicator"].map({n: s.frequency for n, s in specs.items()})
    datasets, fitted, frames = {}, {}, {}
    for frequency in FREQUENCIES:
        rows = tidy[frequency_of.eq(frequency).to_numpy()]
        from_daily = frequency == "weekly" and "daily" in frames
        if rows.empty and not from_daily:
            continue
        if rows.empty:
            frame = Frame(frames["daily"].codes, pd.DatetimeIndex([]), territories)
        else:
            # Weekly also holds the sums of daily counts: same territories as the daily cube.
            extra = frames["daily"].codes if from_daily else ()
            frame = _frequency_frame(rows, specs, frequency, territories, extra)
            if frequency == "daily":
                fitted = rebuild_occupancy(frame)
            aggregate_hierarchy(frame)
            if frequency == "daily":
                derive_indicators(frame)
                fitted["epidemic"] = epidemic.add_indicators(frame)
        if from_daily:
            arrays, weeks, weekly_specs = weekly_from_daily(frames["daily"])
            frame = _merge_weekly(frame, arrays, weeks, weekly_specs, frames["daily"].codes,
                                  territories)
            weekly_coverage(frame, frames["daily"], weekly_specs)
        frames[frequency] = frame
        datasets[frequency] = to_dataset(frame, frequency)
    return datasets, fitted


def _merge_weekly(frame: Frame, arrays: dict[str, np.ndarray], weeks: pd.DatetimeIndex,
                  specs: dict[str, IndicatorSpec], codes: list[str],
                  territories: Territories) -> Frame:
    """Union of native weekly indicators and weekly values of daily ones on one date axis."""
    all_codes = territories.closure([*frame.codes, *codes])
    both = frame.dates.append(weeks)
    start, end = both.min(), both.max()
    merged = Frame(all_codes, pd.date_range(start, end, freq="W-SAT"), territories)
    merged.coverage.update(frame.coverage)  # native weekly totals
    for source_codes, source_dates, source_arrays, source_specs in (
            (frame.codes, frame.dates, frame.arrays, frame.specs),
            (codes, weeks, arrays, specs)):
        t_idx = pd.Index(all_codes).get_indexer(source_codes)
        d_idx = merged.dates.get_indexer(source_dates)
        for name, arr in source_arrays.items():
            if name not in source_specs:
                continue
            out = merged.arrays.setdefault(name, np.full((len(all_codes), len(merged.dates)),
                                                         np.nan))
            out[np.ix_(t_idx, d_idx)] = np.where(np.isnan(arr), out[np.ix_(t_idx, d_idx)], arr)
            merged.specs.setdefault(name, source_specs[name])
    return merged
