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
   by sum, rates by population-weighted mean, national indices repeated for every territory.
   First communes into their EPCI and into their département or collectivité, each straight
   from the communes that report the indicator (:func:`commune_totals`; a total covering only
   some of the territory's communes is a partial sum, with its coverage, never the territory's
   total); then régions and France from départements and collectivités. A computed total is
   served only on the dates when **all its children** report the indicator (every département
   of the registry under it, plus, for France, the collectivités that report the indicator at
   all in the vintage; a partial sum of communes does not report); otherwise it is absent, and
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

Here: :func:`build_cube`, the steps in order. :mod:`~features.cube.frame` (merge, arrays,
dataset), :mod:`~features.cube.derived` (steps 2 and 5), :mod:`~features.cube.totals` and
:mod:`~features.cube.coverage` (step 3), :mod:`~features.cube.weekly` (step 4).
"""

from __future__ import annotations

import pandas as pd
import xarray as xr

from features import epidemic
from features.cube.coverage import (
    COVERAGE_ATTR,
    TotalsCoverage,
    is_partial,
    per_100k,
    rate_population,
    totals_coverage,
)
from features.cube.derived import derive_indicators, rebuild_occupancy, rolling_7d
from features.cube.frame import (
    BASE_LEVELS,
    DATE_FREQ,
    Frame,
    _pivot,
    frequency_frame,
    merge_results,
    to_dataset,
)
from features.cube.totals import (
    TOTAL_LEVELS,
    aggregate_hierarchy,
    commune_totals,
    registry_children,
    weekly_coverage,
)
from features.cube.weekly import MIN_DAYS_FOR_MEAN, merge_weekly, weekly_from_daily
from features.indicators import FREQUENCIES
from features.sources import spf_screening
from features.sources.contract import SourceResult
from features.territories import Territories

#: The package's public names (``_pivot``: the occupancy bench pivots tidy rows with it).
__all__ = [
    "BASE_LEVELS", "COVERAGE_ATTR", "DATE_FREQ", "MIN_DAYS_FOR_MEAN", "TOTAL_LEVELS", "Frame",
    "TotalsCoverage", "_pivot", "aggregate_hierarchy", "build_cube", "commune_totals",
    "derive_indicators", "is_partial", "merge_results", "per_100k", "rate_population",
    "rebuild_occupancy", "registry_children", "rolling_7d", "to_dataset", "totals_coverage",
    "weekly_coverage", "weekly_from_daily",
]


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
            frame = frequency_frame(rows, specs, frequency, territories, extra)
            if frequency == "daily":
                fitted = rebuild_occupancy(frame)
            aggregate_hierarchy(frame)
            if frequency == "daily":
                derive_indicators(frame)
                fitted["epidemic"] = epidemic.add_indicators(frame)
        if from_daily:
            arrays, weeks, weekly_specs = weekly_from_daily(frames["daily"])
            frame = merge_weekly(frame, arrays, weeks, weekly_specs, frames["daily"].codes,
                                 territories)
            weekly_coverage(frame, frames["daily"], weekly_specs)
        frames[frequency] = frame
        datasets[frequency] = to_dataset(frame, frequency)
    return datasets, fitted
