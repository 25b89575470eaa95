"""The job queue and history: retries with backoff, failures that never escape, coalescing,
interrupted runs, the scheduler dispatching API-triggered runs, and the real jobs (forecast,
scenario, ingest chain) on the real cube."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from service import jobs
from service.jobs import JobSpec, enqueue, execute, get_run, list_runs, run_pending
from tests.api_fixtures import copy_catalog, synthetic_runs


@pytest.fixture
def job_env(db_url, make_settings, tmp_path):
    from features.catalog import get_engine

    settings = make_settings(tmp_path, name="jobs", database_url=db_url)
    return settings, get_engine(db_url)


@pytest.fixture
def flaky():
    """A job failing its first ``fail`` calls; registered for the test only."""
    calls = []

    def func(ctx, fail: int = 1, **_):
        calls.append(ctx.attempt)
        if len(calls) <= fail:
            raise RuntimeError(f"source unreachable (call {len(calls)})")
        return {"calls": len(calls)}

    jobs.register_job(JobSpec("flaky", func, "test job", max_attempts=3))
    yield calls
    jobs.JOBS.pop("flaky", None)


def test_failure_is_recorded_then_retried_with_backoff(job_env, flaky, job_clock):
    settings, engine = job_env
    first = enqueue(engine, "flaky", {"fail": 2})
    assert run_pending(engine, settings, retry_base=0.2) == [(first, "failed")]
    failed = get_run(engine, first)
    assert "source unreachable (call 1)" in failed["error"]
    runs, _ = list_runs(engine, job="flaky", status="queued")
    [retry] = runs
    assert retry["retry_of"] == first and retry["attempt"] == 2 and retry["trigger"] == "retry"
    # Queued with its backoff delay (0.2 s for the first retry), and not run before it.
    delay = (dt.datetime.fromisoformat(retry["not_before"])
             - dt.datetime.fromisoformat(retry["queued_at"])).total_seconds()
    assert delay == pytest.approx(0.2, abs=0.01)
    job_clock.advance(0.15)
    assert run_pending(engine, settings, retry_base=0.2) == []  # not before its delay
    job_clock.advance(0.1)
    assert run_pending(engine, settings, retry_base=0.2)[0][1] == "failed"
    job_clock.advance(0.3)  # second retry waits twice as long: 0.4 s
    assert run_pending(engine, settings, retry_base=0.2) == []
    job_clock.advance(0.15)
    [(last, status)] = run_pending(engine, settings, retry_base=0.2)
    assert status == "ok" and get_run(engine, last)["result"] == {"calls": 3}
    assert flaky == [1, 2, 3]


def test_gives_up_after_max_attempts(job_env, flaky):
    settings, engine = job_env
    enqueue(engine, "flaky", {"fail": 99})
    for _ in range(3):
        run_pending(engine, settings, retry_base=0.0)
    runs, total = list_runs(engine, job="flaky")
    assert total == 3 and {r["status"] for r in runs} == {"failed"}
    assert list_runs(engine, job="flaky", status="queued")[1] == 0


def test_job_exceptions_never_escape(job_env):
    settings, engine = job_env

    def explode(ctx):
        raise SystemError("segfault-like")

    jobs.register_job(JobSpec("explode", explode, "test", max_attempts=1))
    try:
        run_id = enqueue(engine, "explode")
        run = jobs.claim(engine, "w")
        assert execute(engine, settings, run) == "failed"
        assert get_run(engine, run_id)["status"] == "failed"
    finally:
        jobs.JOBS.pop("explode")


def test_coalescing_and_one_instance_at_a_time(job_env, flaky):
    settings, engine = job_env
    ids = [enqueue(engine, "flaky", {"fail": 0}) for _ in range(3)]
    run = jobs.claim(engine, "w1")
    assert run["id"] == ids[0]
    assert [get_run(engine, i)["status"] for i in ids[1:]] == ["coalesced", "coalesced"]
    later = enqueue(engine, "flaky", {"fail": 0})
    assert jobs.claim(engine, "w2") is None  # the first is still running: max_instances=1
    execute(engine, settings, run)
    assert jobs.claim(engine, "w2")["id"] == later


def test_interrupted_runs_are_marked_and_retried(job_env, flaky):
    _settings, engine = job_env
    run_id = enqueue(engine, "flaky")
    assert jobs.claim(engine, "dead-worker")["id"] == run_id
    assert jobs.interrupt_stale(engine, "new-leader") == 1
    run = get_run(engine, run_id)
    assert run["status"] == "interrupted" and "dead-worker" in run["error"]
    [retry] = list_runs(engine, job="flaky", status="queued")[0]
    assert retry["retry_of"] == run_id


def test_scheduler_dispatches_api_triggered_runs(served_home, flaky):
    # A home of its own: runs queued by other tests (real ingest, backtest) must not start here.
    from features.catalog import get_engine
    from service.app import create_app, start_scheduler
    from service.auth import create_token

    app = create_app({"TESTING": True, "SETTINGS": served_home, "RATELIMIT_ENABLED": False})
    client = app.test_client()
    admin = {"Authorization": "Bearer " + create_token(get_engine(served_home.database_url),
                                                       "a", "admin")}
    auth = {"admin": admin}
    app.config["SCHEDULER"] = {"lock_ttl": 1.0, "dispatch_interval": 0.1, "retry_base": 0.1,
                               "schedules": {"ingest": None, "backtest": None}}
    scheduler = start_scheduler(app)
    try:
        r = client.post("/api/v1/jobs/flaky/run", json={"params": {"fail": 1}},
                        headers=auth["admin"])
        assert r.status_code == 202
        run_id = r.get_json()["id"]
        deadline = time.monotonic() + 60  # a hang guard, not a speed limit
        while time.monotonic() < deadline:
            runs = client.get("/api/v1/jobs/runs?job=flaky", headers=auth["admin"]).get_json()
            if any(x["status"] == "ok" for x in runs["items"]):
                break
            time.sleep(0.1)
        statuses = {x["id"]: x["status"] for x in runs["items"]}
        assert statuses[run_id] == "failed" and "ok" in statuses.values()
        listing = client.get("/api/v1/jobs", headers=auth["admin"]).get_json()
        assert listing["scheduler"]["this_process_leads"] is True
        flaky_job = next(j for j in listing["items"] if j["name"] == "flaky")
        assert flaky_job["last_run"]["status"] == "ok"
        assert client.post("/api/v1/jobs/nope/run", json={},
                           headers=auth["admin"]).status_code == 404
    finally:
        scheduler.stop()


@pytest.fixture
def served_home(real_cube, make_settings, tmp_path):
    """A writable home with the real cube's vintage and synthetic forecast runs."""
    from features.store import CubeStore

    settings = make_settings(real_cube.data_dir, name="served")
    copy_catalog(real_cube, settings)
    synthetic_runs(settings, CubeStore(settings).current_vintage()["id"])
    return settings


def test_crash_mid_job_keeps_previous_forecasts_served(served_home, monkeypatch, api_clock):
    import os

    from features.catalog import get_engine
    from service.app import create_app

    client = create_app({"TESTING": True, "SETTINGS": served_home}).test_client()
    before = client.get("/api/v1/forecasts?territory=FR&format=hub")
    engine = get_engine(served_home.database_url)
    real_replace = os.replace

    def crash(src, dst):  # the process "dies" while moving the new run into place
        if "runs" in str(dst):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setenv("VIGIE_JOB_ISOLATION", "thread")  # the crash is patched in this process
    run_id = enqueue(engine, "forecast", {"model": "baseline", "runs": [["inc_hosp", "weekly"]],
                                          "levels": ["national"], "calibrate": False})
    assert run_pending(engine, served_home)[0] == (run_id, "failed")
    monkeypatch.setattr(os, "replace", real_replace)
    api_clock.advance(1.1)  # past the freshness window of the response cache
    after = client.get("/api/v1/forecasts?territory=FR&format=hub")
    assert after.headers["X-Vigie-Run"] == before.headers["X-Vigie-Run"]
    assert after.data == before.data
    leftovers = list((served_home.forecasts_dir / "runs").glob(".tmp*"))
    assert leftovers == []


def test_forecast_job_publishes_and_audits(served_home):
    from features.catalog import get_engine
    from service.audit import query
    from service.job_bodies import job_forecast
    from service.jobs import resolve

    engine = get_engine(served_home.database_url)
    run_id = enqueue(engine, "forecast", {"model": "baseline", "runs": [["inc_hosp", "weekly"]],
                                          "levels": ["national"], "calibrate": False})
    assert run_pending(engine, served_home) == [(run_id, "ok")]
    [published] = get_run(engine, run_id)["result"]["runs"]
    rows, _ = query(engine, event="forecast_published")
    assert rows[0]["run_id"] == published and rows[0]["model_version"] == "baseline@1.0"
    assert resolve(jobs.JOBS["forecast"].func) is job_forecast


def test_ingest_job_chains_a_forecast(served_home, monkeypatch):
    import features.ingest
    from features.catalog import get_engine

    class Report:
        outcome, vintage_id, message, failed = "ok", "v-new", "vintage v-new written", []

    monkeypatch.setattr(features.ingest, "run_ingest", lambda *a, **k: Report())
    engine = get_engine(served_home.database_url)
    run_id = enqueue(engine, "ingest")
    run = jobs.claim(engine, "w")
    assert execute(engine, served_home, run) == "ok"
    result = get_run(engine, run_id)["result"]
    chained = get_run(engine, result["forecast_run"])
    assert chained["job"] == "forecast" and chained["trigger"] == "chain"
    assert chained["params"] == {"vintage_id": "v-new"}

    jobs.finish(engine, chained["id"], "ok")  # not run here: a full ensemble takes minutes
    Report.outcome = "failed"
    failed = enqueue(engine, "ingest")
    assert execute(engine, served_home, jobs.claim(engine, "w")) == "failed"
    assert "ingest failed" in get_run(engine, failed)["error"]


def test_scenario_runs_through_the_worker(served_home, auth):
    from features.catalog import get_engine
    from service.app import create_app
    from service.auth import create_token

    engine = get_engine(served_home.database_url)
    planner = {"Authorization": "Bearer " + create_token(engine, "p", "planner")}
    client = create_app({"TESTING": True, "SETTINGS": served_home}).test_client()
    ids = []
    for body in ({"name": "status_quo"}, {"name": "lockdown_2020_11"}):
        r = client.post("/api/v1/scenarios/runs", json=body, headers=planner)
        assert r.status_code == 202
        ids.append(r.get_json()["run_id"])
    assert client.get(f"/api/v1/scenarios/runs/{ids[0]}",
                      headers=planner).get_json()["status"] == "queued"
    assert {s for _, s in run_pending(engine, served_home)} == {"ok"}
    done = client.get(f"/api/v1/scenarios/runs/{ids[0]}", headers=planner).get_json()
    assert done["status"] == "ok" and done["scenario"] == "status_quo"
    assert done["vintage"] and "FR" in done["summary"]
    traj = client.get(f"/api/v1/scenarios/runs/{ids[0]}/trajectories?territory=FR"
                      "&indicator=icu&format=csv&sep=;", headers=planner)
    assert traj.status_code == 200 and traj.get_data(as_text=True).count("\n") > 10
    cmp = client.get(f"/api/v1/scenarios/compare?runs={ids[0]},{ids[1]}",
                     headers=planner).get_json()
    assert [r["scenario"] for r in cmp["runs"]] == ["status_quo", "lockdown_2020_11"]
    # A planner's run, even of the library status quo, is not the public scenario alert
    # until an admin publishes it (tests/test_forged_publication.py).
    r = client.get("/api/v1/alerts?territory=FR&source=scenario")
    assert r.status_code == 404 and r.get_json()["code"] == "no_scenario"
    admin = {"Authorization": "Bearer " + create_token(engine, "a", "admin")}
    assert client.post(f"/api/v1/scenarios/runs/{ids[0]}/publish",
                       headers=admin).status_code == 200
    alerts = client.get("/api/v1/alerts?territory=FR&source=scenario").get_json()
    [fr] = alerts["items"]
    assert fr["p_exceed_14d"] is not None and alerts["run_id"] == f"scenario:{ids[0]}"
