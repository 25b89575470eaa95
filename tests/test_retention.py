"""Retention (``python -m service prune``): referenced vintages and runs stay, the rest goes;
a dry run deletes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import xarray as xr

from features import tempfiles
from features.catalog import vintages
from features.settings import Settings
from features.store import CubeStore
from models.store import ForecastStore
from models.targets import HUB_COLUMNS


def _dataset() -> xr.Dataset:
    return xr.Dataset({"x": (("territory", "date"), np.ones((1, 2)))},
                      coords={"territory": ["FR"],
                              "date": pd.date_range("2021-01-01", periods=2)})


def _run(store: ForecastStore, vintage: str, target: str = "inc_hosp") -> str:
    rows = pd.DataFrame([["2021-01-04", "1 wk ahead inc hosp", "2021-01-09", "FR", "quantile",
                          0.5, 1.0]], columns=HUB_COLUMNS)
    return store.save(rows, {"target": target, "frequency": "weekly", "level": "national",
                             "model": "ensemble", "model_version": "1", "vintage_id": vintage,
                             "as_of": "2021-01-04"}).run_id


@pytest.fixture
def home(tmp_path, db_url):
    """Seven vintages and five forecast runs, each kept (or not) for one reason (SQLite and,
    with VIGIE_TEST_DATABASE_URL, PostgreSQL)."""
    from service.audit import record, record_publication

    settings = Settings.from_env(home=str(tmp_path / "home"), data_dir=str(tmp_path),
                                 database_url=db_url)
    cube = CubeStore(settings)
    start = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    ids = [cube.write_vintage({"daily": _dataset()}, {}, {},
                              issued_at=start + dt.timedelta(days=i)) for i in range(7)]
    audited, pointed, dropped_by_run, scenario, board, _, served = ids
    forecasts = ForecastStore.from_settings(settings)
    runs = {"old": _run(forecasts, dropped_by_run), "audited": _run(forecasts, audited),
            "pointed": _run(forecasts, pointed), "newest": _run(forecasts, served),
            "other_kind": _run(forecasts, served, target="inc_icu")}
    # The 'latest' pointer names an older run (as after a rollback): it is what is published.
    (forecasts.root / "latest" / "inc_hosp_weekly_national_ensemble.json").write_text(
        json.dumps({"run_id": runs["pointed"]}))
    record(cube.engine, event="request", actor="t", role="analyst", vintage_id=audited)
    record_publication(cube.engine, {"run_id": runs["audited"], "vintage_id": audited,
                                     "model": "ensemble", "model_version": "1"})
    (settings.home / "scenario_runs").mkdir()
    (settings.home / "scenario_runs" / "7.json").write_text(
        json.dumps({"vintage": {"vintage_id": scenario}, "summary": {}}))
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / "leaderboard.json").write_text(json.dumps({"vintage_id": board}))
    # A vintage catalogued with a folder of another home (a shared catalog) is never touched.
    outside = tmp_path / "elsewhere" / "20200101T000000Z-outside"
    outside.mkdir(parents=True)
    with cube.engine.begin() as conn:
        conn.execute(vintages.insert().values(
            id=outside.name, issued_at=start - dt.timedelta(days=30), path=str(outside),
            sources={}, files={}, row_counts={}))
    return settings, dict(zip(("audited", "pointed", "dropped_by_run", "scenario", "board",
                               "unused", "served"), ids, strict=True)), runs, outside


def _state(settings: Settings) -> tuple[set[str], set[str], set[str]]:
    with tempfiles.paused():  # looking sweeps nothing
        catalog = {v["id"] for v in CubeStore(settings).list_vintages()}
    folders = {p.name for p in (settings.cube_dir / "vintages").iterdir()}
    runs = {p.name for p in (settings.forecasts_dir / "runs").iterdir()}
    return catalog, folders, runs


def test_prune_keeps_what_is_referenced_and_removes_the_rest(home):
    from service.retention import prune

    settings, v, runs, outside = home
    result = prune(settings, retain_vintages=1, retain_forecast_runs=1)
    catalog, folders, kept_runs = _state(settings)
    gone_v = {v["dropped_by_run"], v["unused"]}
    assert catalog == set(v.values()) - gone_v | {outside.name}
    assert folders == set(v.values()) - gone_v
    assert outside.is_dir()
    assert kept_runs == {runs["audited"], runs["pointed"], runs["newest"], runs["other_kind"]}
    reasons = {i.id: i.reasons for i in result.vintages}
    assert reasons[v["served"]][0] == "served (newest)"
    assert "audit row" in reasons[v["audited"]]
    assert reasons[v["pointed"]] == [f"forecast run {runs['pointed']}"]
    assert reasons[v["scenario"]] == ["scenario result 7"]
    assert reasons[v["board"]] == ["models' leaderboard"]
    run_reasons = {i.id: i.reasons for i in result.runs}
    assert run_reasons[runs["pointed"]] == ["latest pointer (published)"]
    assert run_reasons[runs["audited"]] == ["audit row"]
    assert run_reasons[runs["old"]] == []
    summary = result.summary()
    assert summary["vintages"]["deleted"] == 2 and summary["forecast_runs"]["deleted"] == 1
    assert summary["vintages"]["bytes_freed"] > 0
    # The store still serves the newest vintage, and an old date falls back to a kept one.
    store = CubeStore(settings)
    assert store.current_vintage()["id"] == v["served"]
    assert store.vintage_at("2021-01-05")["id"] == v["board"]  # 'unused' (01-06) is gone
    assert ForecastStore.from_settings(settings).latest("inc_hosp", "national").run_id == \
        runs["pointed"]


def test_dry_run_deletes_nothing(home, monkeypatch, capsys):
    from service.cli import main as cli

    settings, v, runs, _ = home
    stale = settings.cube_dir / "vintages" / ".tmp-20200101T000000Z-dead~elsewhere~1"
    stale.mkdir()
    week_ago = dt.datetime.now().timestamp() - 7 * 86400
    os.utime(stale, (week_ago, week_ago))
    monkeypatch.setattr(tempfiles, "_swept", set())
    before = _state(settings)
    monkeypatch.setenv("VIGIE_HOME", str(settings.home))
    monkeypatch.setenv("VIGIE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VIGIE_RETAIN_VINTAGES", "1")
    monkeypatch.setenv("VIGIE_RETAIN_FORECAST_RUNS", "1")
    assert cli(["prune", "--dry-run", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dry_run"] is True
    assert set(summary["vintages"]["deleted_ids"]) == {v["dropped_by_run"], v["unused"]}
    assert summary["forecast_runs"]["deleted_ids"] == [runs["old"]]
    assert summary["temporary_removed"] == [str(stale)]
    assert _state(settings) == before and stale.exists()
    # The same command without --dry-run does it.
    assert cli(["prune"]) == 0
    out = capsys.readouterr().out
    assert "vintages: 8 found, 6 kept, 2 deleted" in out
    assert _state(settings)[0] == before[0] - {v["dropped_by_run"], v["unused"]}
    assert not stale.exists()


def test_zero_keeps_everything_and_audit_rows_pin_what_they_name(home):
    from service.retention import plan

    settings, v, runs, outside = home
    everything = plan(settings, retain_vintages=0, retain_forecast_runs=0)
    assert all(i.kept for i in [*everything.vintages, *everything.runs])
    with CubeStore(settings).engine.begin() as conn:  # forget the audit trail
        conn.execute(sa.text("DELETE FROM audit_log"))
    minimal = plan(settings, retain_vintages=1, retain_forecast_runs=1)
    assert {i.id for i in minimal.vintages if i.kept} == \
        {v["served"], v["pointed"], v["scenario"], v["board"], outside.name}
    assert {i.id for i in minimal.runs if i.kept} == \
        {runs["pointed"], runs["newest"], runs["other_kind"]}


def test_prune_job_is_registered_and_scheduled():
    from service.jobs import JOBS

    spec = JOBS["prune"]
    assert spec.schedule and spec.schedule.get("trigger") == "cron"


def _backtest(settings: Settings, target: str, plan: str, day: str, vintage: str,
              mtime: float) -> object:
    """One stored past forecast of ``models/backtests`` (the layout of
    models.trackrecord.BacktestStore), written at ``mtime``."""
    folder = settings.backtests_dir / target / plan / "national"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day}_{vintage}.parquet"
    pd.DataFrame({"territory": ["FR"], "value": [1.0]}).to_parquet(path, index=False)
    os.utime(path, (mtime, mtime))
    return path


def test_prune_keeps_the_newest_backtest_plans_and_drops_files_of_gone_vintages(home, capsys,
                                                                                 monkeypatch):
    """Per target the newest plans stay (by last file written), the older ones go; in a kept
    plan, a date made from a vintage pruned now (or never catalogued) goes; a dry run says so
    and deletes nothing; 0 keeps every plan."""
    from service.cli import main as cli
    from service.retention import plan, prune

    settings, v, _, _ = home
    now = dt.datetime.now().timestamp()
    current = [_backtest(settings, "inc_hosp_weekly", "ensemble@1.3-new", day, v["served"], now)
               for day in ("2020-10-05", "2020-10-12")]
    gone_now = _backtest(settings, "inc_hosp_weekly", "ensemble@1.3-new", "2020-10-19",
                         v["unused"], now)
    never = _backtest(settings, "inc_hosp_weekly", "ensemble@1.3-new", "2020-10-26",
                      "20190101T000000Z-nowhere", now)
    old = _backtest(settings, "inc_hosp_weekly", "ensemble@1.2-old", "2020-10-05",
                    v["served"], now - 86400)
    other = _backtest(settings, "icu_daily", "ensemble@1.2-old", "2020-10-05", v["served"],
                      now - 86400)  # the only plan of its target: kept

    everything = plan(settings, retain_vintages=0, retain_forecast_runs=0)
    assert all(i.kept for i in everything.backtests) and everything.stale_backtests == [never]

    monkeypatch.setenv("VIGIE_HOME", str(settings.home))
    monkeypatch.setenv("VIGIE_DATABASE_URL", settings.database_url)
    assert cli(["prune", "--dry-run", "--json", "--keep-vintages", "1", "--keep-runs", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backtest_plans"]["deleted_ids"] == ["inc_hosp_weekly/ensemble@1.2-old"]
    assert summary["backtest_plans"]["bytes_freed"] == old.stat().st_size
    assert summary["backtest_files_of_gone_vintages"]["deleted"] == 2
    assert all(p.exists() for p in [*current, gone_now, never, old, other])

    result = prune(settings, retain_vintages=1, retain_forecast_runs=1)
    assert {i.id: i.reasons for i in result.backtests} == {
        "icu_daily/ensemble@1.2-old": ["1 newest of icu_daily"],
        "inc_hosp_weekly/ensemble@1.3-new": ["1 newest of inc_hosp_weekly"],
        "inc_hosp_weekly/ensemble@1.2-old": []}
    assert all(p.exists() for p in [*current, other])
    assert not gone_now.exists() and not never.exists()
    assert not (settings.backtests_dir / "inc_hosp_weekly" / "ensemble@1.2-old").exists()
    with tempfiles.paused():
        assert tempfiles.find_stale(settings.home, 0) == []  # nothing half-removed left
