"""Heavy jobs run in a worker process: its memory limit and thread counts, a run over the limit
failing with a recorded reason while the serving process carries on, a worker killed by a
signal, and a worker stopped when its run is taken over."""

from __future__ import annotations

import os
import resource
import signal
import threading
import time

import pytest

from service import jobs
from service.jobs import JobSpec, enqueue, get_run, run_pending


def report_environment(ctx, **_):
    """Isolated test job: where it runs and with which limits."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return {"pid": os.getpid(), "rlimit_as_mb": soft >> 20 if soft > 0 else None,
            "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",
                                                       "OPENBLAS_NUM_THREADS")},
            "owned": ctx.still_owns()}


def die(ctx, **_):
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_long(ctx, **_):
    time.sleep(60)
    return {"slept": True}


@pytest.fixture
def test_jobs():
    specs = [JobSpec("iso_env", report_environment, "test", max_attempts=1, isolated=True),
             JobSpec("iso_die", die, "test", max_attempts=1, isolated=True),
             JobSpec("iso_sleep", sleep_long, "test", max_attempts=1, isolated=True)]
    for spec in specs:
        jobs.register_job(spec)
    yield
    for spec in specs:
        jobs.JOBS.pop(spec.name, None)


@pytest.fixture
def job_home(real_cube, make_settings, tmp_path):
    """A writable home reading the real cube's vintage (the scenario job needs one)."""
    from features.catalog import get_engine
    from tests.api_fixtures import copy_catalog

    settings = make_settings(real_cube.data_dir, name="iso")
    copy_catalog(real_cube, settings)
    return settings, get_engine(settings.database_url)


def test_worker_process_gets_its_limits(job_home, test_jobs, monkeypatch):
    settings, engine = job_home
    monkeypatch.setenv("VIGIE_JOB_MEMORY_LIMIT_MB", "3000")
    monkeypatch.setenv("VIGIE_JOB_THREADS", "1")
    run_id = enqueue(engine, "iso_env")
    assert run_pending(engine, settings) == [(run_id, "ok")]
    result = get_run(engine, run_id)["result"]
    assert result["pid"] != os.getpid()
    assert result["rlimit_as_mb"] == 3000
    assert result["threads"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    assert result["owned"] is True  # the child sees the run as its own (same worker, fence)
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != 3000 << 20  # the parent is not limited


def test_scenario_over_its_memory_limit_fails_and_the_service_carries_on(job_home, monkeypatch):
    from service.app import create_app
    from service.scenario_runs import results_dir

    settings, engine = job_home
    client = create_app({"TESTING": True, "SETTINGS": settings}).test_client()
    # 600 MB: the libraries load, the scenario itself (about 0.9 GB of address space) cannot.
    monkeypatch.setenv("VIGIE_JOB_MEMORY_LIMIT_MB", "600")
    monkeypatch.setenv("VIGIE_JOB_THREADS", "1")  # thread buffers count in the address space
    heavy = enqueue(engine, "scenario", {"name": "status_quo"})
    assert run_pending(engine, settings) == [(heavy, "failed")]
    run = get_run(engine, heavy)
    assert run["error"].startswith("out of memory: the job's worker process went over its "
                                   "limit of 600 MB")
    assert "MemoryError" in run["error"] or "failed to map" in run["error"]
    assert not (results_dir(settings) / f"{heavy}.json").exists()
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/indicators").status_code == 200
    monkeypatch.delenv("VIGIE_JOB_MEMORY_LIMIT_MB")  # the default (4096 MB) is enough
    normal = enqueue(engine, "scenario", {"name": "status_quo"})
    assert run_pending(engine, settings) == [(normal, "ok")]
    assert (results_dir(settings) / f"{normal}.json").exists()
    assert get_run(engine, normal)["result"]["scenario"] == "status_quo"


def test_a_killed_worker_is_a_failed_run(job_home, test_jobs):
    settings, engine = job_home
    run_id = enqueue(engine, "iso_die")
    assert run_pending(engine, settings) == [(run_id, "failed")]
    error = get_run(engine, run_id)["error"]
    assert "killed by SIGKILL" in error and "memory" in error


def test_worker_stopped_when_its_run_is_taken_over(job_home, test_jobs, monkeypatch,
                                                   job_clock):
    settings, engine = job_home
    monkeypatch.setattr(jobs.worker, "WATCH_EVERY", 0.2)
    epoch = jobs.acquire_lease(engine, "A", ttl=0.5)
    run_id = enqueue(engine, "iso_sleep")
    run = jobs.claim(engine, "A", fence=epoch)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(jobs.execute(engine, settings, run)))
    thread.start()
    job_clock.advance(0.6)  # A's lease expires while its worker runs
    assert jobs.acquire_lease(engine, "B", ttl=30) == epoch + 1
    thread.join(120)  # a hang guard: the watcher stops the worker within WATCH_EVERY
    assert not thread.is_alive(), "the worker process was not stopped"
    assert outcome == ["fenced"]
    stale = get_run(engine, run_id)
    assert stale["status"] == "running"  # for the new leader to interrupt and retry
    assert jobs.interrupt_stale(engine, "B", epoch=epoch + 1) == 1
