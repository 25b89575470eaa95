"""Scheduled and on-demand jobs: a queue and history in the database, run by one scheduler.

How it fits together
--------------------
* Every run of a job is a row of ``job_runs``: ``queued`` → ``running`` → ``ok`` / ``failed`` /
  ``interrupted`` (or ``coalesced`` into another queued run of the same job). The table is both
  the queue (``POST /api/v1/jobs/<name>/run``, scenario runs submitted through the API, retries)
  and the history shown on ``/api/v1/jobs``.
* :class:`Scheduler` runs in every server process but only the holder of the ``scheduler`` lease
  (a row of ``service_locks``, renewed every few seconds, taken over when it expires) starts
  APScheduler. APScheduler keeps the timetable (daily ingest, weekly backtest) in its persistent
  SQLAlchemy job store with ``max_instances=1``, coalescing and a misfire grace time; when a
  time comes it only queues a run. A dispatcher (an interval job of the same scheduler) claims
  queued runs and executes them in a small thread pool: never in a request thread.
* :func:`execute` never raises: a failing run is recorded with its error and, while attempts
  remain, queued again after ``retry_base * 2**(attempt-1)`` seconds. Job functions write their
  outputs atomically (new cube vintage, new forecast run), so a crash mid-job leaves the
  previous outputs served; a run left ``running`` by a dead process is marked ``interrupted``
  by the next leader and retried.
* Fencing. The lease has an ``epoch`` that grows at every change of holder; a run is claimed
  with the epoch of the claimer's lease (``job_runs.fence``). Finishing a run is a
  compare-and-set (``UPDATE … WHERE id = ? AND status = 'running' AND worker = ? AND fence = ?``
  and the lease still at that epoch), and so is every publication: while a job function runs,
  its :class:`JobContext` is installed as the fence of :mod:`features.fencing`, which the
  stores check inside the transaction of their atomic switch (cube vintage catalogued,
  forecast run and "latest" pointer, scenario result, leaderboard, chained runs). A leader that
  stalled past its lease and wakes up after another took over therefore publishes nothing and
  cannot mark the run ``ok``: its outcome is discarded and noted on the run, which the new
  leader has marked ``interrupted`` and retried.
* Isolation. Scenario, forecast and backtest runs execute in a child process
  (``python -m service.job_worker``) with an address-space limit
  (``VIGIE_JOB_MEMORY_LIMIT_MB``, default 4096) and its BLAS/OpenMP threads set
  (``VIGIE_JOB_THREADS``, default half the CPUs): a run that needs too much memory fails with
  a recorded error, the serving process is untouched. ``VIGIE_JOB_ISOLATION=thread`` runs them
  in the worker thread instead (debugging).
* Job functions are thin: they call the pipeline (``features.ingest``, ``models``,
  ``scenarios``) with the service's settings.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from features import fencing
from features.catalog import as_utc, utcnow
from features.fencing import FencedError
from features.settings import PROJECT_ROOT, Settings
from service.db import job_runs, locks, newest_page

log = logging.getLogger(__name__)

FINAL = ("ok", "failed", "interrupted", "coalesced")
SCHEDULER_LOCK = "scheduler"


class JobError(RuntimeError):
    """A job that ran but did not achieve its purpose (recorded as failed, retried)."""


class WorkerError(JobError):
    """A job run in a child process failed there, or the process died (message says which)."""


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
            return _insert_run(conn, job, params, trigger="chain",
                               requested_by=f"job:{self.run_id}")

    def check(self, conn: sa.Connection) -> None:
        """Raise :class:`FencedError` unless this run is still ours; lock it until ``conn``'s
        transaction ends (the :class:`features.fencing.Fence` protocol)."""
        hit = conn.execute(job_runs.update().where(*_owned(self.run_id, self.worker, self.fence))
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
                *_owned(self.run_id, self.worker, self.fence))).first() is not None

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


@dataclass(frozen=True)
class JobSpec:
    """One kind of job.

    Attributes
    ----------
    func:
        ``func(ctx, **params) -> dict`` (the run's result, JSON-serialisable).
    schedule:
        APScheduler trigger arguments (``{"trigger": "cron", "hour": 6}``); None: on demand.
    max_attempts:
        Runs before giving up (1 = no retry).
    coalesce:
        Several queued runs collapse into one, and never two run at once (``max_instances=1``);
        False for runs that differ by their parameters (scenario runs).
    isolated:
        Run in a child process with a memory limit (heavy computations: the serving process
        must survive them). ``func`` must then be importable by name (a module-level function).
    """

    name: str
    func: Callable[..., dict | None]
    description: str
    schedule: dict | None = None
    max_attempts: int = 3
    coalesce: bool = True
    params_doc: dict[str, str] = field(default_factory=dict)
    isolated: bool = False


JOBS: dict[str, JobSpec] = {}


def register_job(spec: JobSpec) -> JobSpec:
    JOBS[spec.name] = spec
    return spec


# ---------------------------------------------------------------------------- queue & history
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
        return _insert_run(conn, job, params, trigger=trigger, requested_by=requested_by,
                           delay=delay, attempt=attempt, retry_of=retry_of)


def _insert_run(conn: sa.Connection, job: str, params: dict | None, *, trigger: str,
                requested_by: str | None, delay: float = 0.0, attempt: int = 1,
                retry_of: int | None = None) -> int:
    spec = JOBS[job]
    now = utcnow()
    result = conn.execute(job_runs.insert().values(
        job=job, status="queued", trigger=trigger, attempt=attempt,
        max_attempts=spec.max_attempts, params=params or {}, requested_by=requested_by,
        queued_at=now, not_before=now + dt.timedelta(seconds=delay), retry_of=retry_of))
    return int(result.inserted_primary_key[0])


def _row(row) -> dict:
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
    return _row(row) if row is not None else None


def list_runs(engine: sa.Engine, job: str | None = None, status: str | None = None,
              limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
    """Runs newest first, and how many match in all."""
    rows, total = newest_page(engine, job_runs,
                              {job_runs.c.job: job, job_runs.c.status: status}, limit, offset)
    return [_row(r) for r in rows], total


def last_runs(engine: sa.Engine) -> dict[str, dict]:
    """The newest run of each job (any status)."""
    with engine.connect() as conn:
        newest = sa.select(sa.func.max(job_runs.c.id)).group_by(job_runs.c.job)
        rows = conn.execute(sa.select(job_runs).where(job_runs.c.id.in_(newest))).all()
    return {r.job: _row(r) for r in rows}


def _holding(worker: str | None, fence: int | None) -> list:
    """SQL conditions: ``worker`` still holds the scheduler lease at epoch ``fence`` (none when
    the run was claimed without the lease)."""
    if fence is None:
        return []
    return [sa.exists().where(locks.c.name == SCHEDULER_LOCK, locks.c.holder == worker,
                              locks.c.epoch == fence)]


def _owned(run_id: int, worker: str | None, fence: int | None) -> list:
    """SQL conditions: run ``run_id`` is still running, claimed by ``worker`` under ``fence``,
    and that lease has not changed hands since."""
    return [job_runs.c.id == run_id, job_runs.c.status == "running",
            job_runs.c.worker == worker, job_runs.c.fence.is_not_distinct_from(fence),
            *_holding(worker, fence)]


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
            _finish(engine, run_id, "failed", error=f"no job named {job!r} in this version")
            continue
        if spec.coalesce and job in running:
            continue
        with engine.begin() as conn:
            taken = conn.execute(job_runs.update().where(
                job_runs.c.id == run_id, job_runs.c.status == "queued", *_holding(worker, fence)
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


def _finish(engine: sa.Engine, run_id: int, status: str, *, result: dict | None = None,
            error: str | None = None, owner: JobContext | None = None) -> bool:
    """Record a run's outcome; with ``owner``, only if that worker still owns the run (a
    compare-and-set). True when the row was written."""
    where = (_owned(run_id, owner.worker, owner.fence) if owner is not None
             else [job_runs.c.id == run_id])
    with engine.begin() as conn:
        return conn.execute(job_runs.update().where(*where).values(
            status=status, finished_at=utcnow(), result=result, error=error)).rowcount == 1


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
            result = _call(ctx, spec.func, params)
    except BaseException as exc:  # a job must never take the server down
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        error = (str(exc) if isinstance(exc, WorkerError | FencedError)
                 else "".join(traceback.format_exception(exc)))[-4000:]
        log.error("job %s run %s failed: %s", spec.name, run["id"],
                  (str(exc).splitlines() or [type(exc).__name__])[0])
        try:
            if not _finish(engine, run["id"], "failed", error=error, owner=ctx):
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
    if not _finish(engine, run["id"], "ok", result=result, owner=ctx):
        _discarded(engine, ctx, "ok")
        return "fenced"
    log.info("job %s run %s ok", spec.name, run["id"])
    return "ok"


def _call(ctx: JobContext, func: Callable[..., dict | None], params: dict) -> dict:
    """Run a job function with ``ctx`` as the publication fence; its JSON-able result."""
    with fencing.installed(ctx):
        result = func(ctx, **params) or {}
    # A result must be storable; a job returning numpy values should not fail after the fact.
    return json.loads(json.dumps(result, default=str))


# ---------------------------------------------------------------------------- worker processes
#: Thread-count variables of the numeric libraries (OpenMP, OpenBLAS, MKL, numexpr, …).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")
DEFAULT_MEMORY_LIMIT_MB = 4096
_WATCH_EVERY = 5.0  # seconds between checks that a worker process's run is still ours


def isolation() -> str:
    """``process`` (default): isolated jobs run in a child process; ``thread``: in the worker
    thread (``VIGIE_JOB_ISOLATION``)."""
    return "thread" if os.environ.get("VIGIE_JOB_ISOLATION", "").lower() == "thread" \
        else "process"


def memory_limit_mb() -> int:
    """Address-space limit of a job's worker process (``VIGIE_JOB_MEMORY_LIMIT_MB``; 0: none)."""
    return int(os.environ.get("VIGIE_JOB_MEMORY_LIMIT_MB") or DEFAULT_MEMORY_LIMIT_MB)


def job_threads() -> int:
    """BLAS/OpenMP threads of a job's worker process (``VIGIE_JOB_THREADS``; default half the
    CPUs, so that the serving process keeps some)."""
    value = os.environ.get("VIGIE_JOB_THREADS")
    return max(1, int(value) if value else (os.cpu_count() or 2) // 2)


def run_in_worker(ctx: JobContext, spec: JobSpec, params: dict) -> dict:
    """Run ``spec.func(ctx, **params)`` in a child process (``python -m service.job_worker``).

    The child gets the memory limit and thread counts in its environment, rebuilds the context
    (its own database engine, the same run, worker and fence) and publishes under the same
    fence. While it runs, this thread checks every few seconds that the run is still ours and
    kills the child otherwise.

    Raises
    ------
    FencedError
        The run was lost meanwhile.
    WorkerError
        The job failed in the child (its error and traceback), ran out of memory, or the child
        died (its exit code or signal and its last output).
    """
    limit, threads = memory_limit_mb(), job_threads()
    env = {**os.environ, "VIGIE_JOB_MEMORY_LIMIT_MB": str(limit),
           **{name: str(threads) for name in THREAD_VARS},
           "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT)] + [
               p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    request = {"func": spec.func, "params": params, "settings": ctx.settings,
               "run_id": ctx.run_id, "attempt": ctx.attempt, "requested_by": ctx.requested_by,
               "worker": ctx.worker, "fence": ctx.fence}
    with tempfile.TemporaryDirectory(prefix=f"vigie-job-{ctx.run_id}-") as tmp:
        folder = Path(tmp)
        (folder / "request.pkl").write_bytes(pickle.dumps(request))
        with open(folder / "output.log", "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "service.job_worker", str(folder)],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=str(PROJECT_ROOT))
        log.info("job %s run %s: worker process %s (memory limit %s MB, %s threads)",
                 spec.name, ctx.run_id, proc.pid, limit or "no", threads)
        try:
            while True:
                try:
                    proc.wait(timeout=_WATCH_EVERY)
                    break
                except subprocess.TimeoutExpired:
                    pass
                try:
                    owned = ctx.still_owns()
                except Exception:  # database away: the child's own checks still fence it
                    log.exception("job run %s: ownership check failed", ctx.run_id)
                    owned = True
                if not owned:
                    proc.kill()
                    proc.wait()
                    raise FencedError(f"fenced: job run {ctx.run_id} was lost by {ctx.worker} "
                                      f"(lease epoch {ctx.fence}) while its worker process "
                                      f"{proc.pid} ran; the process was stopped")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = (folder / "output.log").read_bytes().decode("utf-8", "replace")
        if output.strip():
            log.info("job %s run %s worker output:\n%s", spec.name, ctx.run_id,
                     output[-20000:].rstrip())
        answer_path = folder / "response.pkl"
        answer = pickle.loads(answer_path.read_bytes()) if answer_path.exists() else None
    if answer is not None and answer["ok"]:
        return answer["result"]
    raise _worker_failure(answer, proc.returncode, output, limit)


def _worker_failure(answer: dict | None, returncode: int, output: str,
                    limit: int) -> Exception:
    tail = "\n".join(output.rstrip().splitlines()[-30:])
    if answer is not None:
        kind, message = answer["type"], answer["message"]
        if kind == "FencedError":
            return FencedError(message)
        if kind == "MemoryError" or _out_of_memory(message):
            return WorkerError(
                f"out of memory: the job's worker process went over its limit of {limit} MB "
                f"(VIGIE_JOB_MEMORY_LIMIT_MB) and stopped; the service was not affected. "
                f"{kind}: {message}\n\nworker traceback:\n{answer['traceback']}")
        return WorkerError(f"{kind}: {message}\n\nworker traceback:\n{answer['traceback']}")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = (f"; SIGKILL usually means it ran out of memory (limit {limit} MB, "
                "VIGIE_JOB_MEMORY_LIMIT_MB)" if -returncode == signal.SIGKILL else "")
        return WorkerError(f"the job's worker process was killed by {name}{hint}; the service "
                           f"was not affected.\n\nlast output:\n{tail}")
    return WorkerError(f"the job's worker process exited with code {returncode} without an "
                       f"answer (memory limit {limit} MB).\n\nlast output:\n{tail}")


def _out_of_memory(message: str) -> bool:
    text = message.lower()
    return any(s in text for s in ("cannot allocate memory", "out of memory",
                                   "unable to allocate", "failed to map segment",
                                   "memory allocation failed"))


def run_request(request: dict) -> dict:
    """The child's side of :func:`run_in_worker` (called by :mod:`service.job_worker`)."""
    from features.catalog import get_engine

    settings = request["settings"]
    ctx = JobContext(settings, get_engine(settings.database_url), request["run_id"],
                     request["attempt"], request.get("requested_by"),
                     worker=request.get("worker"), fence=request.get("fence"))
    return _call(ctx, request["func"], request.get("params") or {})


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
        run = _row(row)
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
                _insert_run(conn, run["job"], run.get("params"), trigger="retry",
                            requested_by=run.get("requested_by"), attempt=run["attempt"] + 1,
                            retry_of=run["id"])
        done += taken
    return done


# ---------------------------------------------------------------------------- the lease
def acquire_lease(engine: sa.Engine, holder: str, ttl: float,
                  name: str = SCHEDULER_LOCK) -> int | None:
    """Take or renew the lease ``name`` for ``ttl`` seconds.

    Returns
    -------
    The lease's epoch when ``holder`` has it (the fencing token: it grows by one whenever the
    lease changes hands, and a renewal keeps it), else None.
    """
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl)
    mine = locks.c.holder == holder
    with engine.begin() as conn:
        # Every right-hand side reads the row as it was before the update.
        renewed = conn.execute(locks.update().where(
            locks.c.name == name, sa.or_(mine, locks.c.expires_at < now)
        ).values(acquired_at=sa.case((mine, locks.c.acquired_at), else_=now),
                 epoch=sa.case((mine, locks.c.epoch), else_=locks.c.epoch + 1),
                 holder=holder, expires_at=expires)).rowcount
        if renewed:
            return int(conn.execute(sa.select(locks.c.epoch).where(locks.c.name == name))
                       .scalar_one())
    try:
        with engine.begin() as conn:
            conn.execute(locks.insert().values(name=name, holder=holder, acquired_at=now,
                                               expires_at=expires, epoch=1))
        return 1
    except sa.exc.IntegrityError:
        return None


def try_lock(engine: sa.Engine, holder: str, ttl: float, name: str = SCHEDULER_LOCK) -> bool:
    """Take or renew the lease ``name`` for ``ttl`` seconds; True when ``holder`` has it."""
    return acquire_lease(engine, holder, ttl, name) is not None


def release_lock(engine: sa.Engine, holder: str, name: str = SCHEDULER_LOCK) -> None:
    """Give the lease up: it is expired, not deleted, so that its epoch never goes back."""
    with engine.begin() as conn:
        conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                     .values(expires_at=utcnow() - dt.timedelta(seconds=1)))


def lock_holder(engine: sa.Engine, name: str = SCHEDULER_LOCK) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["expires_at"] = as_utc(out["expires_at"])
    out["acquired_at"] = as_utc(out["acquired_at"])
    out["alive"] = out["expires_at"] > utcnow()
    return out


# ---------------------------------------------------------------------------- the scheduler
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


# ---------------------------------------------------------------------------- the jobs
def job_ingest(ctx: JobContext, force: bool = False, data_dir: str | None = None,
               forecast_params: dict | None = None) -> dict:
    """Ingest the data directory; queue a forecast refresh when a new vintage was written.

    ``forecast_params`` are passed to that forecast run (default: the ensemble, every target).
    """
    from features.ingest import run_ingest

    report = run_ingest(ctx.settings, data_dir=Path(data_dir) if data_dir else None,
                        force=bool(force))
    result = {"outcome": report.outcome, "vintage_id": report.vintage_id,
              "message": report.message,
              "failed_sources": [s.source for s in report.failed]}
    if report.outcome == "failed":
        raise JobError(f"ingest failed: {report.message}")
    if report.outcome in ("ok", "partial"):
        result["forecast_run"] = ctx.enqueue("forecast", {**(forecast_params or {}),
                                                          "vintage_id": report.vintage_id})
    return result


def job_forecast(ctx: JobContext, model: str = "ensemble", vintage_id: str | None = None,
                 runs: list | None = None, levels: list | None = None,
                 calibrate: bool = True, force: bool | None = None) -> dict:
    """Publish every target × level (``runs``: (target, frequency) pairs, default the published
    ones) through :func:`service.usecases.forecasts.publish_forecasts`, as ``forecast-all``
    does; then queue the retrospective track record if it is stale.

    ``force`` (default: unless the run is the refresh queued by an ingest, which passes its
    ``vintage_id``): publish even a target × level whose latest run was made on the same date
    from the same vintage by the same model version. A run asked for by hand publishes anew;
    the refresh after an ingest publishes only what the new vintage changed.

    Each run is stored atomically (fenced) and audited: if this job dies midway, the runs
    already stored are complete and the others keep their previous run.
    """
    from service.usecases.forecasts import publish_forecasts, track_record_due

    ctx.check_fence()
    report = publish_forecasts(ctx.settings, model=model, targets=runs, levels=levels,
                               calibrate=bool(calibrate),
                               force=vintage_id is None if force is None else bool(force),
                               nice=10,
                               actor="job:forecast", engine=ctx.engine)
    result = {**report.to_dict(), "expected_vintage": vintage_id}
    if report.with_status("failed") and not (report.with_status("published")
                                              or report.with_status("unchanged")):
        raise JobError(f"every forecast failed: {result['failed'][:3]}")
    if model == "ensemble" and runs is None and levels is None \
            and track_record_due(ctx.settings, model):
        result["trackrecord_run"] = ctx.enqueue("trackrecord", {"model": model})
    return result


def job_trackrecord(ctx: JobContext, model: str = "ensemble") -> dict:
    """The retrospective track record of the accuracy page (stored backtests reused)."""
    from service.usecases.forecasts import refresh_track_record

    return refresh_track_record(ctx.settings, model=model, nice=10)


def job_backtest(ctx: JobContext, model: str = "ensemble", target: str = "inc_hosp",
                 frequency: str = "weekly", level: str = "region", weeks: int = 8) -> dict:
    """Weekly leaderboard: backtest the registry's models over the last weeks and score them.

    The result (relative WIS, coverage per model) is stored in the run's result and in
    ``$VIGIE_HOME/models/leaderboard.json`` for ``/api/v1/models/leaderboard``.
    """
    import pandas as pd

    from models.pipeline import backtest, default_opener, monday_dates
    from models.registry import get_registry
    from models.targets import get_target

    tgt = get_target(target, frequency)
    opener = default_opener(ctx.settings)
    ds = opener(tgt.frequency, None)
    last = pd.Timestamp(ds["date"].values[-1])
    end = last - pd.Timedelta(days=7 * max(tgt.horizons))
    dates = monday_dates(end - pd.Timedelta(weeks=weeks), end)
    registry = get_registry(ctx.settings)
    names = [n for n in registry.names() if n != "prophet"] if model == "all" else [model]
    if "baseline" not in names:
        names.append("baseline")
    frame = backtest(tgt, level, dates, names, opener, registry=registry)
    if "observed" not in frame:
        from models.pipeline import observed_rows

        frame = observed_rows(frame, ds, tgt)
    board = leaderboard_from_backtest(frame)
    payload = {"target": target, "frequency": frequency, "level": level,
               "forecast_dates": [str(pd.Timestamp(d).date()) for d in dates],
               "vintage_id": ds.attrs.get("vintage_id", ""), "created_at": utcnow().isoformat(),
               "models": board}
    path = Path(ctx.settings.models_dir) / "leaderboard.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    with fencing.publishing():  # a run this worker lost publishes nothing
        os.replace(tmp, path)
    return payload


def leaderboard_from_backtest(frame) -> list[dict]:
    """Per-model mean WIS, relative WIS against the baseline, 50 % and 95 % coverage."""
    from models.calibration import QCOLS
    from models.scoring import score_table, summarise

    scored = score_table(frame, QCOLS)
    summary = summarise(scored, by=[])
    return json.loads(summary.reset_index().to_json(orient="records"))


def job_scenario(ctx: JobContext, name: str | None = None, definition: dict | None = None,
                 as_of: str | None = None) -> dict:
    """Run a scenario (library name or definition) on the current cube; store its result."""
    from service.scenario_runs import run_and_store

    return run_and_store(ctx.settings, ctx.run_id, name=name, definition=definition,
                         as_of=as_of)


register_job(JobSpec("ingest", job_ingest, "Ingest the data directory into a new cube vintage",
                     schedule={"trigger": "cron", "hour": 6, "minute": 30},
                     params_doc={"force": "write a vintage even if no input changed"}))
register_job(JobSpec("forecast", job_forecast,
                     "Forecast every target and level into the forecast store (after ingest)",
                     schedule=None, max_attempts=2, isolated=True,
                     params_doc={"model": "registry name (default ensemble)"}))
register_job(JobSpec("trackrecord", job_trackrecord,
                     "Retrospective track record of every published target and level "
                     "(accuracy page; after forecast refreshes)",
                     schedule=None, max_attempts=2, isolated=True,
                     params_doc={"model": "registry name (default ensemble)"}))
register_job(JobSpec("backtest", job_backtest,
                     "Weekly backtest of the models and leaderboard of their scores",
                     schedule={"trigger": "cron", "day_of_week": "mon", "hour": 3},
                     max_attempts=2, isolated=True,
                     params_doc={"model": "registry name, or 'all'"}))
register_job(JobSpec("scenario", job_scenario, "Run a what-if scenario submitted through the API",
                     schedule=None, max_attempts=1, coalesce=False, isolated=True))


def job_prune(ctx: JobContext, dry_run: bool = False) -> dict:
    """Apply the retention policy to vintages and forecast runs (:mod:`service.retention`)."""
    from service.retention import job_prune as prune

    return prune(ctx, dry_run=dry_run)


register_job(JobSpec("prune", job_prune,
                     "Delete old cube vintages and forecast runs nothing refers to (retention)",
                     schedule={"trigger": "cron", "hour": 4, "minute": 15}, max_attempts=1,
                     params_doc={"dry_run": "say what would be deleted, delete nothing"}))
