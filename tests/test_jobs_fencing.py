"""Job fencing: a leader that loses its lease while a job runs can neither publish nor mark the
run ``ok``; the leader that took over runs it again, and exactly one publication results.

The main test pauses the leader's job inside the job function (a threading.Event), stalls the
leader (its lease renewal and dispatcher stop, as in a long GC pause or a frozen VM, while the
job thread stays alive), lets a second scheduler take the lease over and run the job, then
resumes the first. Each runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from service import jobs
from service.jobs import JobSpec, enqueue, get_run, list_runs

PAUSE = threading.Event()    # set by the first attempt once it is inside the job
RESUME = threading.Event()   # set by the test to let the first attempt go on
FAST = {"lock_ttl": 1.0, "dispatch_interval": 0.1, "retry_base": 0.1, "workers": 1,
        "schedules": {"ingest": None, "backtest": None}}


def _hub_rows() -> pd.DataFrame:
    return pd.DataFrame({"forecast_date": ["2021-01-04"], "target": ["1 wk ahead inc hosp"],
                         "target_end_date": ["2021-01-10"], "location": ["FR"],
                         "type": ["quantile"], "quantile": [0.5], "value": [100.0]})


def _meta(run_id: int) -> dict:
    return {"target": "inc_hosp", "frequency": "weekly", "level": "national",
            "model": "fence-probe", "model_version": "1", "vintage_id": "v-test",
            "as_of": "2021-01-04", "job_run": run_id}


def publish_forecast(ctx, **_):
    """The test job: its first attempt stops inside the job until the test resumes it, then
    publishes a forecast run (run folder + "latest" pointer) like the forecast job does."""
    from models.store import ForecastStore

    if ctx.attempt == 1:
        PAUSE.set()
        RESUME.wait(60)
    run = ForecastStore.from_settings(ctx.settings).save(_hub_rows(), _meta(ctx.run_id))
    return {"forecast_run": run.run_id}


@pytest.fixture
def probe_job():
    PAUSE.clear()
    RESUME.clear()
    jobs.register_job(JobSpec("fence_probe", publish_forecast, "test: paused publication",
                              max_attempts=3))
    yield "fence_probe"
    RESUME.set()
    jobs.JOBS.pop("fence_probe", None)


@pytest.fixture
def env(db_url, make_settings, tmp_path):
    from features.catalog import get_engine

    settings = make_settings(tmp_path, name="fencing", database_url=db_url)
    return settings, get_engine(db_url)


def _wait(condition, seconds: float = 120.0, what: str = "condition"):
    """Poll ``condition`` until true; the deadline only guards against a hang."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stall(scheduler) -> None:
    """The leader's process freezes except for the job thread already inside the job: it stops
    renewing its lease and dispatching, without releasing anything."""
    scheduler._stop.set()
    scheduler._thread.join(timeout=10)
    scheduler._thread = None
    aps, scheduler._aps = scheduler._aps, None
    aps.shutdown(wait=False)


def test_a_leader_that_lost_its_lease_publishes_nothing(env, probe_job):
    from models.store import ForecastStore

    settings, engine = env
    a = jobs.Scheduler(settings, engine, **FAST)
    b = jobs.Scheduler(settings, engine, **FAST)
    a.start()
    try:
        _wait(lambda: a.is_leader, what="a to lead")
        first = enqueue(engine, probe_job)
        assert PAUSE.wait(30), "the first attempt never started"
        assert get_run(engine, first)["worker"] == a.holder
        _stall(a)
        b.start()  # takes the lease over once a's has expired, and retries the run
        ok = _wait(lambda: list_runs(engine, job=probe_job, status="ok")[0],
                   what="the retry to finish")
        RESUME.set()  # a wakes up and carries on with the job it had started
        a._pool.shutdown(wait=True)
    finally:
        RESUME.set()
        b.stop()
        a.stop()

    runs, _ = list_runs(engine, job=probe_job)
    by_id = {r["id"]: r for r in runs}
    [winner] = ok
    assert winner["worker"] == b.holder and winner["retry_of"] == first
    # One ok: the run a had started stays interrupted, with why.
    assert [r["id"] for r in runs if r["status"] == "ok"] == [winner["id"]]
    stale = by_id[first]
    assert stale["status"] == "interrupted"
    assert "lost the scheduler lease" in stale["error"]
    assert "[fenced]" in stale["error"] and "discarded" in stale["error"]
    assert stale["result"] is None
    # One publication: b's. a's forecast run reached neither the store nor the pointer.
    store = ForecastStore.from_settings(settings)
    published = [r for r in store.list_runs() if r.metadata.get("model") == "fence-probe"]
    assert [r.metadata["job_run"] for r in published] == [winner["id"]]
    latest = store.latest("inc_hosp", "national", "fence-probe", "weekly")
    assert latest.run_id == winner["result"]["forecast_run"]
    assert not list((settings.forecasts_dir / "runs").glob(".tmp*"))


def test_completion_and_publication_are_compare_and_set(env, probe_job, job_clock):
    from features import fencing
    from features.store import CubeStore
    from models.store import ForecastStore

    settings, engine = env
    epoch_a = jobs.acquire_lease(engine, "A", ttl=0.3)
    assert epoch_a is not None and jobs.acquire_lease(engine, "A", ttl=0.3) == epoch_a
    run_id = enqueue(engine, probe_job)
    run = jobs.claim(engine, "A", fence=epoch_a)
    assert run["id"] == run_id and run["fence"] == epoch_a
    ctx = jobs.JobContext(settings, engine, run_id, 1, worker="A", fence=epoch_a)
    assert ctx.still_owns()
    ctx.check_fence()

    job_clock.advance(0.4)  # A stalls past its lease; B takes it over
    epoch_b = jobs.acquire_lease(engine, "B", ttl=30)
    assert epoch_b == epoch_a + 1
    assert jobs.acquire_lease(engine, "A", ttl=30) is None
    assert not ctx.still_owns()
    with pytest.raises(fencing.FencedError, match="lease"):
        ctx.check_fence()
    # Every publication path refuses, and leaves nothing behind.
    with fencing.installed(ctx):
        with pytest.raises(fencing.FencedError):
            ForecastStore.from_settings(settings).save(_hub_rows(), _meta(run_id))
        with pytest.raises(fencing.FencedError):
            CubeStore(settings).write_vintage({}, {}, {"sources": {}, "files": {}})
        with pytest.raises(fencing.FencedError):
            ctx.enqueue(probe_job)
    assert ForecastStore.from_settings(settings).list_runs() == []
    assert CubeStore(settings).list_vintages() == []
    assert not list((settings.cube_dir / "vintages").iterdir())
    # Finishing is refused too; the run stays running until the new leader takes it over.
    assert not jobs.finish(engine, run_id, "ok", result={}, owner=ctx)
    assert get_run(engine, run_id)["status"] == "running"
    # A can no longer claim anything under its old epoch.
    jobs.register_job(JobSpec("fence_other", publish_forecast, "test", coalesce=False))
    try:
        other = enqueue(engine, "fence_other")
        assert jobs.claim(engine, "A", fence=epoch_a) is None
        assert jobs.claim(engine, "B", fence=epoch_b)["id"] == other
    finally:
        jobs.JOBS.pop("fence_other", None)
    assert jobs.interrupt_stale(engine, "B", epoch=epoch_b) == 1
    assert get_run(engine, run_id)["status"] == "interrupted"
    # The epoch never goes back: released and taken again, it still grows.
    jobs.release_lock(engine, "B")
    assert jobs.acquire_lease(engine, "A", ttl=30) == epoch_b + 1


def test_execute_discards_what_a_fenced_worker_returns(env, probe_job, job_clock):
    settings, engine = env
    epoch = jobs.acquire_lease(engine, "A", ttl=0.3)
    run_id = enqueue(engine, probe_job)
    run = jobs.claim(engine, "A", fence=epoch)
    RESUME.set()
    job_clock.advance(0.4)
    assert jobs.acquire_lease(engine, "B", ttl=30) == epoch + 1
    assert jobs.interrupt_stale(engine, "B", epoch=epoch + 1) == 1
    assert jobs.execute(engine, settings, run) == "fenced"
    stale = get_run(engine, run_id)
    assert stale["status"] == "interrupted" and "[fenced]" in stale["error"]
    assert "FencedError" in stale["error"]
    [retry] = list_runs(engine, job=probe_job, status="queued")[0]
    assert retry["retry_of"] == run_id  # one retry, queued by the new leader only
    assert list_runs(engine, job=probe_job)[1] == 2


def test_runs_without_the_lease_still_finish(env, probe_job):
    """``jobs run`` (no scheduler, no lease): the run row alone is the fence."""
    settings, engine = env
    RESUME.set()
    run_id = enqueue(engine, probe_job)
    assert jobs.run_pending(engine, settings, worker="cli") == [(run_id, "ok")]
    assert get_run(engine, run_id)["fence"] is None
