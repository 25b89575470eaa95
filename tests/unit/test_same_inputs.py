"""Date tasks with the same inputs are fitted once (models.forecasting.run_date_tasks): a
quarterly target's Mondays of one quarter read the same cube and forecast the same quarters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

import models.forecasting as forecasting
from models.forecasting import DateTask, LevelPlan, run_date_tasks, same_inputs
from models.targets import get_target


def _opener():
    dates = pd.date_range("2018-03-31", "2021-12-31", freq="QE")
    full = xr.Dataset({"unemployment_rate": (("territory", "date"),
                                             np.linspace(7, 9, len(dates))[None, :])},
                      coords={"territory": ["FR"], "date": dates},
                      attrs={"vintage_id": "v1"})

    def opener(frequency, as_of=None):
        return full.sel(date=full["date"] < pd.Timestamp(as_of)).assign_attrs(vintage_id="v1")

    return opener


def _tasks(days):
    target = get_target("unemployment", "quarterly")
    plan = LevelPlan("baseline", None, {"national": {"baseline": None}}, "baseline@1-x")
    return [DateTask(target, pd.Timestamp(d), plan, target.horizons, tag=i)
            for i, d in enumerate(days)]


def test_a_quarters_mondays_are_fitted_once_and_each_gets_its_own_date(monkeypatch):
    days = pd.date_range("2021-03-22", "2021-07-12", freq="W-MON")
    tasks = _tasks(days)
    groups = same_inputs(tasks, _opener())
    # 2021-03-22/29 see data to 2020-12-31; April-June Mondays to 2021-03-31; July to June.
    assert [len(g) for g in groups] == [2, 13, 2]
    calls = []

    def fake(opener, target, forecast_date, plan, horizons):
        calls.append(pd.Timestamp(forecast_date))
        ds = opener(target.frequency, forecast_date)
        rows = pd.DataFrame({"model": "baseline", "level": "national",
                             "forecast_date": [pd.Timestamp(forecast_date)] * 2,
                             "territory": "FR", "horizon": [1, 2],
                             "target_end_date": [target.end_date(forecast_date, n)
                                                 for n in (1, 2)],
                             "q": [float(ds.sizes["date"])] * 2})
        return rows, {"national": {"vintage_id": "v1", "signal_fallbacks": {}}}

    monkeypatch.setattr(forecasting, "levels_date_rows", fake)
    seen = []
    results = run_date_tasks(tasks, _opener(),
                             on_done=lambda t, r, e: seen.append((t.tag, r, e)))
    assert calls == [days[0], days[2], days[15]]
    assert sorted(tag for tag, _, _ in seen) == list(range(len(days)))
    for task, (rows, meta) in zip(tasks, results, strict=True):
        direct, direct_meta = fake(_opener(), task.target, task.forecast_date, None, None)
        pd.testing.assert_frame_equal(rows.reset_index(drop=True), direct)
        assert meta == direct_meta


def test_weekly_origins_each_read_new_dates():
    target = get_target("inc_hosp", "weekly")
    dates = pd.date_range("2020-03-21", periods=60, freq="W-SAT")
    full = xr.Dataset({"inc_hosp": (("territory", "date"), np.ones((1, 60)))},
                      coords={"territory": ["FR"], "date": dates})
    plan = LevelPlan("baseline", None, {"national": {"baseline": None}}, "baseline@1-x")
    tasks = [DateTask(target, d, plan, target.horizons)
             for d in pd.date_range("2020-09-07", periods=10, freq="W-MON")]
    groups = same_inputs(tasks, lambda f, as_of: full.sel(date=full["date"] < as_of))
    assert groups == [[i] for i in range(10)]
