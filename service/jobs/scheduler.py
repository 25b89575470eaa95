"""The scheduler: one per server process; only the holder of the scheduler lease runs
APScheduler (the timetable, in its persistent job store) and a small pool of job workers.

When a scheduled time comes APScheduler only queues a run (:func:`fire`, referenced by text as
``service.jobs:fire`` in the persistent store); a dispatcher (an interval job of the same
scheduler) claims queued runs and executes them in the pool, never in a request thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import threading
import uuid

import sqlalchemy as sa

from features.settings import Settings
from service.jobs.lease import acquire_lease, release_lock
from service.jobs.queue import claim, enqueue, interrupt_stale
from service.jobs.runner import execute
from service.jobs.spec import JOBS

log = logging.getLogger("service.jobs")

_ACTIVE: Scheduler | None = None


def fire(name: str) -> None:
    """APScheduler's entry point (referenced by text in the persistent store): queue a run."""
    scheduler = _ACTIVE
    if scheduler is None:  # pragma: no cover - only reachable if the store outlives the leader
        log.warning("scheduled job %s fired with no active scheduler", name)
        return
    enqueue(scheduler.engine, name, trigger="schedule", requested_by="scheduler")
    scheduler.dispatch()


class Scheduler:
    """One per server process; only the lease holder runs APScheduler and the job workers.

    Parameters
    ----------
    settings, engine:
        Where the jobs read and write.
    lock_ttl:
        Seconds a lease lasts without renewal (a dead leader is replaced after at most this).
    dispatch_interval:
        Seconds between looks at the queue (API-submitted runs start within this).
    retry_base:
        First retry delay in seconds (doubled at each attempt).
    workers:
        Job runs executed at once.
    schedules:
        Overrides of the job timetable (name → APScheduler trigger arguments, None to disable).
    """

    def __init__(self, settings: Settings, engine: sa.Engine, *, lock_ttl: float = 30.0,
                 dispatch_interval: float = 2.0, retry_base: float = 60.0, workers: int = 2,
                 schedules: dict[str, dict | None] | None = None,
                 timezone: str = "Europe/Paris") -> None:
        self.settings = settings
        self.engine = engine
        self.lock_ttl = lock_ttl
        self.dispatch_interval = dispatch_interval
        self.retry_base = retry_base
        self.workers = workers
        self.schedules = schedules or {}
        self.timezone = timezone
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._aps = None
        self._epoch: int | None = None  # of the lease while this process leads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._aps is not None

    def start(self) -> None:
        """Start competing for the lease in a background thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._elect_loop, name="vigie-scheduler-lease",
                                        daemon=True)
        self._thread.start()

    def _elect_loop(self) -> None:
        renew = max(0.2, self.lock_ttl / 3)
        while not self._stop.is_set():
            try:
                epoch = acquire_lease(self.engine, self.holder, self.lock_ttl)
            except Exception:  # database away: stop leading rather than run jobs twice
                log.exception("scheduler lease check failed")
                epoch = None
            if self._aps is not None and epoch != self._epoch:
                # Lost, or lost and taken back (a new epoch): runs claimed under the old epoch
                # are fenced; leading again starts from scratch.
                log.warning("scheduler lease lost by %s (epoch %s)", self.holder, self._epoch)
                self._step_down()
            if epoch is not None and self._aps is None:
                self._epoch = epoch
                self._become_leader()
            self._stop.wait(renew)

    def _become_leader(self) -> None:
        global _ACTIVE
        from apscheduler.executors.pool import ThreadPoolExecutor as APSPool
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        log.info("scheduler lease taken by %s (epoch %s)", self.holder, self._epoch)
        interrupt_stale(self.engine, self.holder, retry_base=self.retry_base, epoch=self._epoch)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers,
                                                           thread_name_prefix="vigie-job")
        aps = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine),
                       "memory": MemoryJobStore()},
            executors={"default": APSPool(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
            timezone=self.timezone)
        for name, spec in JOBS.items():
            schedule = self.schedules.get(name, spec.schedule)
            if schedule is None:
                continue
            aps.add_job("service.jobs:fire", args=[name], id=name, name=spec.description,
                        replace_existing=True, **schedule)
        # Jobs whose schedule was removed since they were stored must not fire any more.
        aps.add_job(self.dispatch, "interval", seconds=self.dispatch_interval, id="dispatch",
                    jobstore="memory", replace_existing=True)
        aps.start()
        for job in aps.get_jobs(jobstore="default"):
            schedule = self.schedules.get(job.id, JOBS[job.id].schedule if job.id in JOBS
                                          else None)
            if schedule is None:
                job.remove()
        self._aps = aps
        _ACTIVE = self

    def _step_down(self) -> None:
        global _ACTIVE
        aps, self._aps = self._aps, None
        self._epoch = None
        if aps is not None:
            aps.shutdown(wait=False)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        if _ACTIVE is self:
            _ACTIVE = None

    def dispatch(self) -> None:
        """Claim due runs while workers are free and run them in the pool."""
        while True:
            pool, epoch = self._pool, self._epoch
            if pool is None or epoch is None:
                return
            with self._busy_lock:
                if self._busy >= self.workers:
                    return
            run = claim(self.engine, self.holder, fence=epoch)
            if run is None:
                return
            with self._busy_lock:
                self._busy += 1
            try:
                pool.submit(self._run, run)
            except RuntimeError:  # the pool was shut down meanwhile (lease lost)
                with self._busy_lock:
                    self._busy -= 1
                return

    def _run(self, run: dict) -> None:
        try:
            execute(self.engine, self.settings, run, retry_base=self.retry_base)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def jobs(self) -> list[dict]:
        """The timetable as APScheduler holds it (only known to the leader)."""
        if self._aps is None:
            return []
        return [{"id": j.id, "next_run_time": j.next_run_time.isoformat()
                 if j.next_run_time else None, "trigger": str(j.trigger)}
                for j in self._aps.get_jobs(jobstore="default")]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._step_down()
        try:
            release_lock(self.engine, self.holder)
        except Exception:  # pragma: no cover - the lease expires anyway
            log.exception("could not release the scheduler lease")

