"""What the track record's speed-ups reuse gives the numbers a fresh computation gives.

- gbm's calendar feature: the holidays read once per span of years and counted by binary
  search equal the count of holidays ``d - span < h <= d`` done date by date;
- a per-series model fitted on many territories at once (rows read by position) forecasts
  each territory as a fit on that territory alone does, whatever the order of y's axes.
"""

from __future__ import annotations

import holidays
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from models.baseline import Baseline
from models.learning import _holiday_counts
from models.stats import ETS


def _brute_force_holidays(dates: pd.DatetimeIndex, span: int) -> np.ndarray:
    days = pd.DatetimeIndex(list(holidays.France(
        years=range(dates.min().year - 1, dates.max().year + 2)).keys()))
    return np.array([((days > d - pd.Timedelta(days=span)) & (days <= d)).sum()
                     for d in dates], dtype=float)


@pytest.mark.parametrize(("freq", "step", "span"), [
    ("D", pd.offsets.Day(), 1),
    ("W-SUN", pd.offsets.Week(weekday=6), 7),
])
def test_holiday_counts_equal_the_date_by_date_count(freq, step, span):
    dates = pd.date_range("2019-12-20", "2022-01-10", freq=freq)
    counts = _holiday_counts(dates, step)
    assert counts.dtype == float
    assert np.array_equal(counts, _brute_force_holidays(dates, span))
    # 14 July 2021 (a Wednesday) is in the week ending Sunday 18 July, and is a day.
    at = dates.get_loc(pd.Timestamp("2021-07-18" if span == 7 else "2021-07-14"))
    assert counts[at] == 1.0
    # The same span asked again (the cached holidays) gives the same counts.
    assert np.array_equal(_holiday_counts(dates, step), counts)


def _series(order: tuple[str, str]) -> xr.DataArray:
    rng = np.random.default_rng(7)
    dates = pd.date_range("2020-03-01", periods=40, freq="W-SUN")
    values = np.exp(np.cumsum(rng.normal(0.0, 0.2, (4, 40)), axis=1)) * [[50], [8], [300], [1]]
    values[1, -2:] = np.nan  # a series two weeks late
    values[3, :36] = np.nan  # and one with a short history (baseline fallback)
    y = xr.DataArray(values, dims=("territory", "date"),
                     coords={"territory": ["35", "22", "69", "01"], "date": dates})
    return y.transpose(*order)


@pytest.mark.parametrize("model", [Baseline, ETS])
@pytest.mark.parametrize("order", [("territory", "date"), ("date", "territory")])
def test_per_series_fit_by_position_equals_a_fit_of_each_territory_alone(model, order):
    y = _series(order)
    together = model().fit(y).predict(4)
    for code in ["35", "22", "69", "01"]:
        alone = model().fit(y.sel(territory=[code])).predict(4)
        np.testing.assert_array_equal(together.sel(territory=code).values,
                                      alone.sel(territory=code).values)
