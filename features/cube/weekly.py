"""The weekly cube's values of daily indicators (step 4 of :mod:`features.cube`): sums of counts
over complete Sunday–Saturday weeks, means of levels, the Saturday's value of stocks; merged
with the natively weekly indicators on one axis of Saturdays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.cube.frame import Frame
from features.indicators import IndicatorSpec
from features.territories import Territories

#: Days of a week that must be published for a weekly mean of a daily level.
MIN_DAYS_FOR_MEAN = 4


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


def merge_weekly(frame: Frame, arrays: dict[str, np.ndarray], weeks: pd.DatetimeIndex,
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
