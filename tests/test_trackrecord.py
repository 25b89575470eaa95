"""The retrospective track record: rolling-origin backtests of the data, calibrated as served
and scored against the Hub baseline, by level, period and horizon; stored backtest forecasts
reused (and refitted when the cube would give other inputs)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.settings import Settings
from tests.synthetic_cube import synthetic_cube

TARGETS = [("inc_hosp", "weekly")]
MODEL = "ets"  # fast per-series fits; the pipeline is the same for the ensemble


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from features.store import CubeStore

    monkeypatch.setenv("VIGIE_HOME", str(tmp_path))
    monkeypatch.delenv("VIGIE_DATABASE_URL", raising=False)
    settings = Settings.from_env()
    CubeStore(settings).write_vintage({"weekly": synthetic_cube("weekly", periods=60)}, {},
                                      {"data_dir": str(tmp_path), "sources": {"s": {}}})
    return settings


def test_rows_come_from_the_backtest_and_follow_the_contract(settings):
    from models.backtest import backtest, monday_dates
    from models.calibration import ConformalCalibrator
    from models.preparation import default_opener
    from models.scoring import score_table, summarise
    from models.targets import get_target
    from models.trackrecord import (
        ROW_FIELDS,
        compute_track_record,
        is_current,
        load_retrospective,
    )

    assert load_retrospective(settings) is None and not is_current(settings, MODEL)
    planned = []
    payload = compute_track_record(settings, TARGETS, model=MODEL, on_plan=planned.append)
    rows = load_retrospective(settings)
    assert rows and all(tuple(r) == ROW_FIELDS for r in rows)
    assert is_current(settings, MODEL) and payload["failed"] == []
    assert {(r["level"], r["period"]) for r in rows} == {
        (lv, p) for lv in ("national", "region", "department")
        for p in ("development", "held_out")}
    assert {r["horizon"] for r in rows} == {1, 2, 3, 4}
    for r in rows:
        assert r["target"] == "inc_hosp" and r["frequency"] == "weekly" and r["model"] == MODEL
        assert math.isfinite(r["relative_wis"]) and 0 <= r["coverage_90"] <= 1
        assert (r["end"] < "2021-03-01") is (r["period"] == "development")
    # France's development row at 1 week is the calibrated backtest's relative WIS.
    target = get_target("inc_hosp", "weekly")
    dev = [d for d in monday_dates("2020-09-07", "2021-02-28")]
    frame = backtest(target, "national", dev, [MODEL], default_opener(settings),
                     calibration=ConformalCalibrator.for_frequency("weekly"))
    scored = score_table(frame[frame["model"].isin([MODEL, "baseline"])], frame.filter(
        like="q").columns.tolist())
    expected = summarise(scored, ["horizon"]).query(f"model == '{MODEL}' and horizon == 1")
    row = next(r for r in rows if r["level"] == "national" and r["period"] == "development"
               and r["horizon"] == 1)
    assert row["relative_wis"] == pytest.approx(float(expected["rel_wis"].iloc[0]), abs=1e-3)
    assert row["n_forecasts"] == int(expected["n"].iloc[0])
    assert row["coverage_90"] == pytest.approx(float(expected["cov90"].iloc[0]), abs=1e-3)

    # A second computation fits nothing: every past forecast is stored.
    again = compute_track_record(settings, TARGETS, model=MODEL, on_plan=planned.append)
    assert planned[0] > 0 and planned[1] == 0
    strip = [{k: v for k, v in r.items() if k != "computed_at"} for r in again["rows"]]
    assert strip == [{k: v for k, v in r.items() if k != "computed_at"} for r in rows]


def test_a_stored_forecast_from_another_vintage_is_refitted(settings):
    from models.forecasting import level_plan
    from models.registry import get_registry
    from models.targets import get_target
    from models.trackrecord import BacktestStore, missing_tasks, vintage_resolver

    target = get_target("inc_hosp", "weekly")
    plan = level_plan(MODEL, target, target.levels, get_registry(settings))
    store = BacktestStore.from_settings(settings)
    vintage_of = vintage_resolver(settings)
    day = pd.Timestamp("2021-01-04")
    store.save(target, plan.key, "national", day, vintage_of(day), pd.DataFrame())
    store.save(target, plan.key, "region", day, "another-vintage", pd.DataFrame())
    [task] = missing_tasks(store, target, plan, [day], vintage_of)
    assert set(task.plan.members) == {"region", "department"}


def test_the_retrospective_is_stale_after_a_new_vintage(settings):
    from features.store import CubeStore
    from models.registry import get_registry
    from models.trackrecord import is_current, write_retrospective

    current = CubeStore(settings).current_vintage()["id"]
    version = get_registry(settings).get(MODEL).version
    write_retrospective(settings, {"vintage_id": current, "model": MODEL,
                                   "model_version": version, "rows": []})
    assert is_current(settings, MODEL) and not is_current(settings, "ensemble")
    CubeStore(settings).write_vintage({"weekly": synthetic_cube("weekly", periods=61)}, {},
                                      {"data_dir": "x", "sources": {"s": {}}})
    assert not is_current(settings, MODEL)


def test_publishing_every_level_at_once_gives_the_forecasts_of_one_level_at_a_time(settings):
    """Pooled members fitted once for all levels, calibration from the backtest store: the
    published quantiles are those of models.forecasting.forecast level by level; a second
    refresh fits no past date again."""
    import numpy as np

    from models.forecasting import forecast
    from models.preparation import default_opener
    from models.registry import get_registry
    from models.store import ForecastStore
    from models.targets import get_target, to_hub
    from service.usecases.forecasts import publish_forecasts

    # A cheap ensemble of the same shape as the default: a pooled member (growth, fitted on
    # the whole hierarchy), a per-series one (ets) for France only, the baseline.
    get_registry(settings).register("ensemble", kind="ensemble", version="test", params={
        "members": ("ets", "growth", "baseline"),
        "level_members": {"region": ("growth", "baseline"),
                          "department": ("growth", "baseline")}})
    as_of = pd.Timestamp("2021-01-04")
    report = publish_forecasts(settings, model="ensemble", targets=[("inc_hosp", "weekly")],
                               as_of=as_of, parallel=False)
    assert len(report.with_status("published")) == 3 and report.reused_dates == 0
    target = get_target("inc_hosp", "weekly")
    store = ForecastStore.from_settings(settings)
    for level in ("national", "region", "department"):
        fc, meta = forecast(target, level, as_of, "ensemble", default_opener(settings))
        expected = to_hub(fc, target, as_of)
        published = store.latest("inc_hosp", level).read()
        assert np.allclose(published["value"].to_numpy(), expected["value"].to_numpy())
        factors = store.latest("inc_hosp", level).metadata["calibration_factors"]
        assert factors == {str(h): k for h, k in meta["calibration_factors"].items()}
    again = publish_forecasts(settings, model="ensemble", targets=[("inc_hosp", "weekly")],
                              as_of=as_of, parallel=False, force=True)
    assert again.fitted_dates == 0 and again.reused_dates == report.fitted_dates > 0
    assert len(again.with_status("published")) == 3


def test_state_says_when_the_track_record_is_being_computed(settings):
    from features.catalog import get_engine
    from models.registry import get_registry
    from models.trackrecord import write_retrospective
    from service.jobs import claim, enqueue
    from service.usecases.forecasts import track_record_state

    engine = get_engine(settings.database_url)
    assert track_record_state(settings) == "missing"
    enqueue(engine, "trackrecord", {"model": "ensemble"})
    assert track_record_state(settings) == "queued"
    claim(engine, "worker")
    assert track_record_state(settings) == "running"
    write_retrospective(settings, {"model": "ensemble", "rows": [],
                                   "model_version": get_registry(settings).get("ensemble").version})
    assert track_record_state(settings) == "ready"


def test_the_file_is_written_target_by_target_while_the_others_are_fitted(settings):
    """The accuracy page shows the first targets' scores while later ones are still being
    fitted: the file is rewritten as each target's last date ends, ``pending`` naming the
    others, and is current only once nothing is pending (the same rows as at the end)."""
    from models.trackrecord import compute_track_record, is_current, read_retrospective

    targets = [("inc_hosp", "weekly"), ("inc_icu", "weekly")]
    seen = []

    def on_task(task, error):
        if task.target.name == "inc_icu" and not seen:
            payload = read_retrospective(settings)
            seen.append((payload, is_current(settings, MODEL)))

    final = compute_track_record(settings, targets, model=MODEL, on_task=on_task)
    [(partial, current_then)] = seen
    assert partial["pending"] == [{"target": "inc_icu", "frequency": "weekly"}]
    assert {r["target"] for r in partial["rows"]} == {"inc_hosp"} and not current_then
    assert final["pending"] == [] and is_current(settings, MODEL)
    assert {r["target"] for r in final["rows"]} == {"inc_hosp", "inc_icu"}
    assert [r for r in final["rows"] if r["target"] == "inc_hosp"] == partial["rows"]


def test_a_target_whose_date_fails_is_reported_failed_at_every_level(settings, monkeypatch):
    import models.forecasting as forecasting
    from models.trackrecord import compute_track_record

    fit = forecasting.levels_date_rows
    bad = pd.Timestamp("2021-01-04")

    def failing(opener, target, forecast_date, *args, **kwargs):
        if target.name == "inc_icu" and pd.Timestamp(forecast_date) == bad:
            raise RuntimeError("fit failed")
        return fit(opener, target, forecast_date, *args, **kwargs)

    monkeypatch.setattr(forecasting, "levels_date_rows", failing)
    payload = compute_track_record(settings, [("inc_hosp", "weekly"), ("inc_icu", "weekly")],
                                   model=MODEL)
    assert payload["failed"] == [{"target": "inc_icu", "frequency": "weekly", "level": lv}
                                 for lv in ("national", "region", "department")]
    assert {r["target"] for r in payload["rows"]} == {"inc_hosp"} and payload["pending"] == []
