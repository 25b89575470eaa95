"""What a job function gets (:class:`JobContext`) and how it is called (:func:`call`): with its
context installed as the publication fence of :mod:`features.fencing`, so that a run this
worker lost publishes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from features import fencing
from features.fencing import FencedError
from features.settings import Settings
from features.storage import jsonsafe
from service.db import job_runs, locks
from service.jobs.queue import insert_run, owned
from service.jobs.spec import SCHEDULER_LOCK, resolve


@dataclass
class JobContext:
    """What a job function gets: settings, database, its run, and a way to queue follow-ups.

    ``worker`` and ``fence`` are who claimed the run and under which lease epoch; the context is
    the run's :class:`features.fencing.Fence` while the job function runs.
    """

    settings: Settings
    engine: sa.Engine
    run_id: int
    attempt: int
    requested_by: str | None = None
    worker: str | None = None
    fence: int | None = None

    def enqueue(self, job: str, params: dict | None = None) -> int:
        """Queue a follow-up run (only while this run is still ours)."""
        with self.engine.begin() as conn:
            self.check(conn)
            return insert_run(conn, job, params, trigger="chain",
                               requested_by=f"job:{self.run_id}")

    def check(self, conn: sa.Connection) -> None:
        """Raise :class:`FencedError` unless this run is still ours; lock it until ``conn``'s
        transaction ends (the :class:`features.fencing.Fence` protocol)."""
        hit = conn.execute(job_runs.update().where(*owned(self.run_id, self.worker, self.fence))
                           .values(fence=job_runs.c.fence)).rowcount
        if hit and self.fence is not None and conn.dialect.name == "postgresql":
            # Hold the lease's row too: a takeover waits until this transaction is over.
            hit = conn.execute(sa.select(locks.c.epoch).where(
                locks.c.name == SCHEDULER_LOCK, locks.c.holder == self.worker,
                locks.c.epoch == self.fence).with_for_update()).first() is not None
        if not hit:
            raise FencedError(self._lost(conn))

    def still_owns(self) -> bool:
        """Whether this run is still ours (read only; a job's own decision to stop early)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(job_runs.c.id).where(
                *owned(self.run_id, self.worker, self.fence))).first() is not None

    def check_fence(self) -> None:
        """Raise :class:`FencedError` unless this run is still ours."""
        with self.engine.begin() as conn:
            self.check(conn)

    def _lost(self, conn: sa.Connection) -> str:
        row = conn.execute(sa.select(job_runs.c.status, job_runs.c.worker, job_runs.c.fence)
                           .where(job_runs.c.id == self.run_id)).first()
        lease = conn.execute(sa.select(locks.c.holder, locks.c.epoch)
                             .where(locks.c.name == SCHEDULER_LOCK)).first()
        now = (f"the run is {row.status} (worker {row.worker}, fence {row.fence})"
               if row is not None else "the run no longer exists")
        held = (f"the scheduler lease is held by {lease.holder} at epoch {lease.epoch}"
                if lease is not None else "no scheduler lease exists")
        return (f"fenced: job run {self.run_id} was claimed by {self.worker} under lease epoch "
                f"{self.fence}, but {now} and {held}; this worker lost it and must not publish")


def call(ctx: JobContext, func: Callable[..., dict | None] | str, params: dict) -> dict:
    """Run a job function (or the one named ``"module:name"``) with ``ctx`` as the
    publication fence; its JSON-able result."""
    function = resolve(func)
    with fencing.installed(ctx):
        result = function(ctx, **params) or {}
    # A result must be storable; a job returning numpy values should not fail after the fact.
    return jsonsafe.plain(result)

