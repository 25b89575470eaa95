"""Running a claimed job run: :func:`execute` (never raises; records the outcome under the
run's fence and queues a retry on failure) and :func:`run_pending` (every due run, in this
thread: ``python -m service jobs run``, tests)."""

from __future__ import annotations

import logging
import traceback

import sqlalchemy as sa

from features.catalog import utcnow
from features.fencing import FencedError
from features.settings import Settings
from service.db import job_runs
from service.jobs.context import JobContext, call
from service.jobs.queue import claim, enqueue, finish
from service.jobs.spec import JOBS, WorkerError
from service.jobs.worker import isolation, run_in_worker

log = logging.getLogger("service.jobs")


def _discarded(engine: sa.Engine, owner: JobContext, outcome: str) -> None:
    """Note on a run this worker lost that what it came back with was thrown away."""
    note = (f"\n[fenced] {owner.worker} came back at {utcnow():%Y-%m-%d %H:%M:%S} UTC with "
            f"outcome '{outcome}' after losing this run (claimed under lease epoch "
            f"{owner.fence}); that outcome was discarded and nothing was published")
    log.warning("job run %s: %s lost the run; its outcome (%s) is discarded", owner.run_id,
                owner.worker, outcome)
    try:
        with engine.begin() as conn:
            conn.execute(job_runs.update().where(
                job_runs.c.id == owner.run_id, job_runs.c.worker == owner.worker,
                job_runs.c.fence.is_not_distinct_from(owner.fence),
                job_runs.c.status != "running",  # still running: the new leader will mark it
            ).values(error=sa.func.coalesce(job_runs.c.error, "") + note))
    except Exception:  # pragma: no cover - a note only
        log.exception("could not note the discarded outcome of job run %s", owner.run_id)


def execute(engine: sa.Engine, settings: Settings, run: dict, *,
            retry_base: float = 60.0) -> str:
    """Run a claimed job run; record its outcome; queue a retry on failure. Never raises.

    Returns
    -------
    The final status: ``ok`` or ``failed``, or ``fenced`` when this worker lost the run
    meanwhile (its outcome is discarded; see the module docstring).
    """
    spec = JOBS[run["job"]]
    ctx = JobContext(settings, engine, run["id"], run["attempt"], run.get("requested_by"),
                     worker=run.get("worker"), fence=run.get("fence"))
    params = run.get("params") or {}
    log.info("job %s run %s attempt %s/%s started", spec.name, run["id"], run["attempt"],
             run["max_attempts"])
    try:
        if spec.isolated and isolation() == "process":
            result = run_in_worker(ctx, spec, params)
        else:
            result = call(ctx, spec.func, params)
    except BaseException as exc:  # a job must never take the server down
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        error = (str(exc) if isinstance(exc, WorkerError | FencedError)
                 else "".join(traceback.format_exception(exc)))[-4000:]
        log.error("job %s run %s failed: %s", spec.name, run["id"],
                  (str(exc).splitlines() or [type(exc).__name__])[0])
        try:
            if not finish(engine, run["id"], "failed", error=error, owner=ctx):
                _discarded(engine, ctx, f"failed: {type(exc).__name__}: {exc}"[:300])
                return "fenced"
            if run["attempt"] < run["max_attempts"]:
                delay = retry_base * 2 ** (run["attempt"] - 1)
                retry = enqueue(engine, spec.name, run.get("params"), trigger="retry",
                                requested_by=run.get("requested_by"), delay=delay,
                                attempt=run["attempt"] + 1, retry_of=run["id"])
                log.info("job %s: retry %s queued in %.0fs", spec.name, retry, delay)
        except Exception:
            log.exception("could not record the failure of job run %s", run["id"])
        return "failed"
    if not finish(engine, run["id"], "ok", result=result, owner=ctx):
        _discarded(engine, ctx, "ok")
        return "fenced"
    log.info("job %s run %s ok", spec.name, run["id"])
    return "ok"


def run_pending(engine: sa.Engine, settings: Settings, *, worker: str = "inline",
                retry_base: float = 60.0, limit: int = 100) -> list[tuple[int, str]]:
    """Run every due queued run in this thread (tests, ``jobs run-pending``); (id, status)."""
    done = []
    for _ in range(limit):
        run = claim(engine, worker)
        if run is None:
            break
        done.append((run["id"], execute(engine, settings, run, retry_base=retry_base)))
    return done


