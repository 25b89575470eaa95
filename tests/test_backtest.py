"""Backtests: no look-ahead, calibration from past errors only, Hub format, CLI contract."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from models.backtest import backtest, monday_dates
from models.base import Forecaster, future_dates, infer_step, quantile_array
from models.calibration import QCOLS, ConformalCalibrator, forecast_rows
from models.forecasting import forecast
from models.preparation import raw_forecasts
from models.registry import KINDS, Registry
from models.targets import get_target, to_hub
from tests.synthetic_cube import synthetic_cube

FULL = synthetic_cube("weekly", periods=60)
TARGET = get_target("inc_hosp", "weekly")


def opener(frequency: str, as_of: Any) -> xr.Dataset:
    """Same contract as features.store.open_cube: dates on/after as_of removed."""
    if as_of is None:
        return FULL
    return FULL.sel(date=FULL["date"] < pd.Timestamp(as_of))


class Spy(Forecaster):
    """Records the last date it was fitted on; predicts its last value."""

    alias: ClassVar[str] = "spy"
    seen: ClassVar[list[pd.Timestamp]] = []

    def fit(self, y, X=None):
        self._store_axis(y)
        Spy.seen.append(pd.Timestamp(y["date"].values[-1]))
        if X is not None and X.sizes.get("date"):
            Spy.seen.append(pd.Timestamp(X["date"].values[-1]))
        self.last_ = np.nan_to_num(y.isel(date=-1).values)
        return self

    def predict(self, horizon, X_future=None):
        values = np.repeat(self.last_[:, None, None], horizon, axis=1)
        values = np.repeat(values, 23, axis=2)
        return quantile_array(values, self.territories_,
                              future_dates(self.last_date_, self.step_, horizon), model="spy")


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setitem(KINDS, "spy", Spy)
    reg = Registry()
    reg.register("spy", kind="spy", version="test", persist=False)
    Spy.seen.clear()
    return reg


def test_backtest_cannot_see_data_on_or_after_its_forecast_date(registry):
    dates = monday_dates("2021-01-04", "2021-02-01")
    result = backtest(TARGET, "department", dates, ["spy"], opener, registry=registry,
                      warmup=2)
    fitted_dates = {fd: d for fd, d in zip([*[dates[0] - pd.Timedelta(weeks=k) for k in (2, 1)],
                                            *dates], Spy.seen[::2], strict=True)}
    for fd, seen in fitted_dates.items():
        assert seen < fd, f"forecast of {fd.date()} saw data of {seen.date()}"
        assert seen == fd - pd.Timedelta(days=2)  # the Saturday ending the last complete week
    assert set(result["forecast_date"]) == set(dates)
    spy = result[result["model"] == "spy_raw"]
    # A spy predicts the last value it saw: that value is dated before the forecast date.
    for fd, rows in spy.groupby("forecast_date"):
        last = FULL["inc_hosp"].sel(date=fd - pd.Timedelta(days=2))
        expected = last.sel(territory=rows["territory"].tolist()).values
        np.testing.assert_allclose(rows["q0.5"].to_numpy(), expected)


def test_raw_forecasts_refuse_an_uncut_cube(registry):
    with pytest.raises(ValueError, match="on or after the forecast date"):
        raw_forecasts(FULL, TARGET, "national", pd.Timestamp("2021-01-04"),
                      {"spy": registry.create("spy")}, (1, 2))


def test_calibration_ignores_outcomes_not_yet_observed():
    fc = quantile_array(np.tile(np.linspace(5, 15, 23), (4, 2, 1)), ["a", "b", "c", "d"],
                        pd.date_range("2021-01-02", periods=2, freq="W-SAT"), model="m")
    as_of = pd.Timestamp("2021-01-04")
    past = forecast_rows(fc, pd.Timestamp("2020-12-21")).assign(observed=10.0)
    past["target_end_date"] = pd.Timestamp("2020-12-26")
    future = past.assign(target_end_date=as_of, observed=1e6)  # not known on as_of
    cal_past = ConformalCalibrator(prior_scores=0).fit(past, as_of)
    cal_all = ConformalCalibrator(prior_scores=0).fit(pd.concat([past, future]), as_of)
    np.testing.assert_allclose(cal_past.factors(1), cal_all.factors(1))
    assert cal_past.factors(1).max() < 1  # outcomes at the median: intervals narrow


def test_calibration_widens_too_narrow_intervals():
    rng = np.random.default_rng(0)
    n = 400
    q = np.tile(np.exp(np.linspace(-0.1, 0.1, 23)) * 100, (n, 1))  # ±10 % "90 %" interval
    rows = pd.DataFrame(q, columns=QCOLS).assign(
        forecast_date=pd.Timestamp("2021-01-04") - pd.to_timedelta(rng.integers(7, 60, n), "D"),
        territory="01", horizon=1, observed=100 * np.exp(rng.normal(0, 0.15, n)))  # factor ~2.5
    rows["target_end_date"] = rows["forecast_date"] + pd.Timedelta(days=5)
    cal = ConformalCalibrator(window=100, prior_scores=0).fit(rows, pd.Timestamp("2021-01-04"))
    fc = quantile_array(q[:1][None], ["01"], pd.DatetimeIndex(["2021-01-09"]), model="m")
    wide = cal.transform(fc)
    lo, hi = wide.sel(quantile=0.05).item(), wide.sel(quantile=0.95).item()
    inside = np.mean((rows["observed"] >= lo) & (rows["observed"] <= hi))
    assert 0.85 <= inside <= 0.95


def test_hub_format_of_a_monday_forecast():
    fd = pd.Timestamp("2021-03-01")  # a Monday
    fc, meta = forecast(TARGET, "department", fd, "baseline", opener, calibrate=False,
                        registry=Registry())
    rows = to_hub(fc, TARGET, fd)
    assert list(rows.columns) == ["forecast_date", "target", "target_end_date", "location",
                                  "type", "quantile", "value"]
    assert set(rows["target"]) == {f"{n} wk ahead inc hosp" for n in (1, 2, 3, 4)}
    one = rows[rows["target"] == "1 wk ahead inc hosp"]
    assert set(one["target_end_date"]) == {"2021-03-06"}  # Saturday, 5 days later
    assert set(rows["location"]) == {"01", "69", "2A"}
    assert len(rows) == 3 * 4 * 23
    assert meta["as_of"] == "2021-03-01"


def test_infer_step_and_daily_targets():
    assert infer_step(pd.date_range("2021-01-01", periods=5, freq="D")) == pd.offsets.Day(1)
    t = get_target("hosp")
    assert t.hub_target(7) == "7 day ahead hosp"
    assert t.end_date(pd.Timestamp("2021-03-01"), 7) == pd.Timestamp("2021-03-08")


def test_daily_targets_calibrate_on_half_a_year_of_origins():
    daily = ConformalCalibrator.for_frequency("daily")
    assert (daily.window, daily.prior_scores) == (26, 0.0)
    weekly = ConformalCalibrator.for_frequency("weekly")
    assert (weekly.window, weekly.prior_scores) == (10, 20.0)
    # Ten scores all twice outside the interval: with the weekly prior the factor is shrunk
    # to 2 ** (10 / 30); the daily settings apply the measured factor.
    q = np.tile(np.exp(np.linspace(-0.1, 0.1, 23)) * 100, (10, 1))
    rows = pd.DataFrame(q, columns=QCOLS).assign(
        forecast_date=pd.date_range("2020-10-05", periods=10, freq="7D"), territory="FR",
        horizon=7, observed=100 * np.exp(0.2))
    rows["target_end_date"] = rows["forecast_date"] + pd.Timedelta(days=7)
    as_of = pd.Timestamp("2021-01-04")
    widest = daily.fit(rows, as_of).factors(7)[0]  # the 98 % interval
    assert widest == pytest.approx(2.0, rel=0.01)
    assert weekly.fit(rows, as_of).factors(7)[0] == pytest.approx(2.0 ** (10 / 30), rel=0.01)
