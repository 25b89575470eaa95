"""One scheduler across processes: two ``Scheduler`` processes on one database (SQLite and
PostgreSQL); only the lease holder runs the scheduled job; when it dies (SIGKILL, no clean
release) the other takes over within the lease time.

On a loaded machine a leader may miss its renewal and lose the lease while alive; that is the
lease doing its job, so the invariant tested is the fencing one: every run was claimed under
one epoch of the lease, by that epoch's single holder.

Also runnable as a script (the child processes): ``python tests/test_jobs_lock.py URL HOME``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(url: str, home: str) -> None:  # pragma: no cover - runs in the subprocesses
    from features.catalog import get_engine
    from features.settings import Settings
    from service import jobs

    jobs.register_job(jobs.JobSpec("tick", lambda ctx: {"pid": os.getpid()}, "test tick",
                                   schedule={"trigger": "interval", "seconds": 0.3},
                                   max_attempts=1))
    settings = Settings.from_env(home=home, database_url=url)
    scheduler = jobs.Scheduler(settings, get_engine(url), lock_ttl=1.5, dispatch_interval=0.1,
                               schedules={"ingest": None, "backtest": None})
    scheduler.start()
    print("started", scheduler.holder, flush=True)
    threading.Event().wait()  # serve until killed


def _spawn(url: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), url, str(home)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


def _tick_runs(engine) -> list[tuple[str, int]]:
    """(worker, fence) of the tick runs done, in order."""
    import sqlalchemy as sa

    from service.db import job_runs

    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(job_runs.c.worker, job_runs.c.fence)
                                               .where(job_runs.c.job == "tick",
                                                      job_runs.c.status == "ok")
                                               .order_by(job_runs.c.id))]


def _tick_workers(engine) -> list[str]:
    return [worker for worker, _ in _tick_runs(engine)]


def _one_holder_per_epoch(engine) -> dict[int, str]:
    """Epoch → the one worker that ran the ticks claimed under it (fails on two)."""
    holders: dict[int, set[str]] = {}
    for worker, fence in _tick_runs(engine):
        assert fence is not None, "a scheduled run claimed without the lease"
        holders.setdefault(fence, set()).add(worker)
    assert all(len(w) == 1 for w in holders.values()), holders
    fences = [fence for _, fence in _tick_runs(engine)]
    assert fences == sorted(fences), "a run claimed under an older epoch after a newer one"
    return {fence: next(iter(w)) for fence, w in holders.items()}


def test_one_scheduler_across_two_processes(db_url, tmp_path):
    from features.catalog import get_engine
    from service.jobs import lock_holder

    engine = get_engine(db_url)
    procs = [_spawn(db_url, tmp_path / "a"), _spawn(db_url, tmp_path / "b")]
    try:
        holders = [p.stdout.readline().split()[1] for p in procs]
        deadline = time.monotonic() + 60  # hang guards, not speed limits
        while time.monotonic() < deadline and len(_tick_workers(engine)) < 5:
            time.sleep(0.2)
        workers = _tick_workers(engine)
        assert len(workers) >= 5, "the scheduled job did not run"
        lease = lock_holder(engine)
        leader = lease["holder"]
        by_epoch = _one_holder_per_epoch(engine)  # only the lease holder may run jobs
        assert set(by_epoch) <= set(range(1, lease["epoch"] + 1))
        # The leader dies without releasing its lease: the other process takes over.
        dead = holders.index(leader)
        procs[dead].send_signal(signal.SIGKILL)
        procs[dead].wait()
        survivor = holders[1 - dead]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and survivor not in _tick_workers(engine):
            time.sleep(0.2)
        after = _tick_workers(engine)
        assert survivor in after
        lease = lock_holder(engine)
        assert lease["holder"] == survivor
        # Never both: the survivor's ticks since the kill are under its own, newer epoch.
        by_epoch = _one_holder_per_epoch(engine)
        assert by_epoch[max(by_epoch)] == survivor and max(by_epoch) <= lease["epoch"]
        assert after[-1] == survivor
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_lease_is_exclusive_and_expires(db_url, job_clock):
    from features.catalog import get_engine
    from service.jobs import release_lock, try_lock

    engine = get_engine(db_url)
    assert try_lock(engine, "a", ttl=0.5)
    assert not try_lock(engine, "b", ttl=0.5)
    assert try_lock(engine, "a", ttl=0.5)  # renewal
    job_clock.advance(0.4)
    assert not try_lock(engine, "b", ttl=5)  # renewed: still a's
    job_clock.advance(0.2)
    assert try_lock(engine, "b", ttl=5)  # expired: taken over
    assert not try_lock(engine, "a", ttl=5)
    release_lock(engine, "b")
    assert try_lock(engine, "a", ttl=5)


if __name__ == "__main__":  # pragma: no cover
    _child(sys.argv[1], sys.argv[2])
