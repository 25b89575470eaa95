"""The queue and history of job runs: rows of ``job_runs`` (``queued`` → ``running`` → ``ok`` /
``failed`` / ``interrupted``, or ``coalesced``), claimed by compare-and-set.

Who owns a running run is ``worker`` and ``fence`` (the scheduler lease's epoch when it was
claimed): :func:`owned` is that condition in SQL, used to finish a run and by
:class:`service.jobs.context.JobContext` to fence publications.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from features.catalog import as_utc, utcnow
from service.db import job_runs, locks, newest_page
from service.jobs.spec import JOBS, SCHEDULER_LOCK

log = logging.getLogger("service.jobs")


def enqueue(engine: sa.Engine, job: str, params: dict | None = None, *, trigger: str = "manual",
            requested_by: str | None = None, delay: float = 0.0, attempt: int = 1,
            retry_of: int | None = None) -> int:
    """Queue a run of ``job``; return its id.

    Raises
    ------
    KeyError
        If no job has that name.
    """
    with engine.begin() as conn:
        return insert_run(conn, job, params, trigger=trigger, requested_by=requested_by,
                           delay=delay, attempt=attempt, retry_of=retry_of)


def insert_run(conn: sa.Connection, job: str, params: dict | None, *, trigger: str,
                requested_by: str | None, delay: float = 0.0, attempt: int = 1,
                retry_of: int | None = None) -> int:
    spec = JOBS[job]
    now = utcnow()
    result = conn.execute(job_runs.insert().values(
        job=job, status="queued", trigger=trigger, attempt=attempt,
        max_attempts=spec.max_attempts, params=params or {}, requested_by=requested_by,
        queued_at=now, not_before=now + dt.timedelta(seconds=delay), retry_of=retry_of))
    return int(result.inserted_primary_key[0])


def as_dict(row) -> dict:
    out = dict(row._mapping)
    for key in ("queued_at", "not_before", "started_at", "finished_at"):
        if out.get(key) is not None:
            out[key] = as_utc(out[key]).isoformat()
    return out


def get_run(engine: sa.Engine, run_id: int) -> dict | None:
    if not 0 < run_id < 2**31:  # ids from URLs: beyond the column's range nothing can match
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.select(job_runs).where(job_runs.c.id == run_id)).first()
    return as_dict(row) if row is not None else None


def list_runs(engine: sa.Engine, job: str | None = None, status: str | None = None,
              limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
    """Runs newest first, and how many match in all."""
    rows, total = newest_page(engine, job_runs,
                              {job_runs.c.job: job, job_runs.c.status: status}, limit, offset)
    return [as_dict(r) for r in rows], total


def last_runs(engine: sa.Engine) -> dict[str, dict]:
    """The newest run of each job (any status)."""
    with engine.connect() as conn:
        newest = sa.select(sa.func.max(job_runs.c.id)).group_by(job_runs.c.job)
        rows = conn.execute(sa.select(job_runs).where(job_runs.c.id.in_(newest))).all()
    return {r.job: as_dict(r) for r in rows}


def holding(worker: str | None, fence: int | None) -> list:
    """SQL conditions: ``worker`` still holds the scheduler lease at epoch ``fence`` (none when
    the run was claimed without the lease)."""
    if fence is None:
        return []
    return [sa.exists().where(locks.c.name == SCHEDULER_LOCK, locks.c.holder == worker,
                              locks.c.epoch == fence)]


def owned(run_id: int, worker: str | None, fence: int | None) -> list:
    """SQL conditions: run ``run_id`` is still running, claimed by ``worker`` under ``fence``,
    and that lease has not changed hands since."""
    return [job_runs.c.id == run_id, job_runs.c.status == "running",
            job_runs.c.worker == worker, job_runs.c.fence.is_not_distinct_from(fence),
            *holding(worker, fence)]


def claim(engine: sa.Engine, worker: str, fence: int | None = None) -> dict | None:
    """Take the oldest due queued run (skipping jobs already running); None when none is due.

    The ``UPDATE … WHERE status = 'queued'`` is the claim: of two workers racing for a row,
    only one sees a row count of 1. With ``fence`` (the epoch of the scheduler lease ``worker``
    holds), the claim also requires the lease to be still held at that epoch, and the run
    records it: it can then only be finished or published under that same lease.
    """
    now = utcnow()
    with engine.connect() as conn:
        due = conn.execute(sa.select(job_runs.c.id, job_runs.c.job)
                           .where(job_runs.c.status == "queued", job_runs.c.not_before <= now)
                           .order_by(job_runs.c.id).limit(50)).all()
        running = set(conn.execute(sa.select(job_runs.c.job).distinct()
                                   .where(job_runs.c.status == "running")).scalars())
    for run_id, job in due:
        spec = JOBS.get(job)
        if spec is None:
            finish(engine, run_id, "failed", error=f"no job named {job!r} in this version")
            continue
        if spec.coalesce and job in running:
            continue
        with engine.begin() as conn:
            taken = conn.execute(job_runs.update().where(
                job_runs.c.id == run_id, job_runs.c.status == "queued", *holding(worker, fence)
            ).values(status="running", started_at=utcnow(), worker=worker, fence=fence)).rowcount
            if not taken:
                continue
            if spec.coalesce:
                conn.execute(job_runs.update().where(
                    job_runs.c.job == job, job_runs.c.status == "queued",
                    job_runs.c.not_before <= now, job_runs.c.id != run_id,
                ).values(status="coalesced", finished_at=utcnow(),
                         result={"coalesced_into": run_id}))
        return get_run(engine, run_id)
    return None


def finish(engine: sa.Engine, run_id: int, status: str, *, result: dict | None = None,
            error: str | None = None, owner=None) -> bool:
    """Record a run's outcome; with ``owner`` (a :class:`~service.jobs.context.JobContext`),
    only if that worker still owns the run (a compare-and-set). True when the row was
    written."""
    where = (owned(run_id, owner.worker, owner.fence) if owner is not None
             else [job_runs.c.id == run_id])
    with engine.begin() as conn:
        return conn.execute(job_runs.update().where(*where).values(
            status=status, finished_at=utcnow(), result=result, error=error)).rowcount == 1


def interrupt_stale(engine: sa.Engine, worker: str, *, retry_base: float = 60.0,
                    epoch: int | None = None) -> int:
    """Mark runs left ``running`` by another (dead or stalled) worker, or claimed under an
    older lease epoch, as interrupted and retry them; how many were."""
    with engine.connect() as conn:
        stale = conn.execute(sa.select(job_runs).where(
            job_runs.c.status == "running",
            sa.or_(job_runs.c.worker.is_distinct_from(worker),
                   job_runs.c.fence.is_distinct_from(epoch)))).all()
    done = 0
    for row in stale:
        run = as_dict(row)
        retry = run["job"] in JOBS and run["attempt"] < run["max_attempts"]
        error = (f"worker {run['worker']} stopped or lost the scheduler lease while the job was "
                 f"running (claimed under lease epoch {run.get('fence')}; taken over by "
                 f"{worker} at epoch {epoch}); {'a retry is queued' if retry else 'no retry'}. "
                 "Anything that worker still does with this run is discarded.")
        # Compare-and-set: a run its worker finished meanwhile keeps its outcome.
        with engine.begin() as conn:
            taken = conn.execute(job_runs.update().where(
                job_runs.c.id == run["id"], job_runs.c.status == "running",
                job_runs.c.worker.is_not_distinct_from(run["worker"]),
                job_runs.c.fence.is_not_distinct_from(run.get("fence")),
            ).values(status="interrupted", finished_at=utcnow(), error=error)).rowcount
            if taken and retry:
                insert_run(conn, run["job"], run.get("params"), trigger="retry",
                            requested_by=run.get("requested_by"), attempt=run["attempt"] + 1,
                            retry_of=run["id"])
        done += taken
    return done

