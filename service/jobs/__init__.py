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
* Job functions are thin (:mod:`service.job_bodies`, outside this package): they call one use
  case (:mod:`service.usecases`) with the service's settings; the use case writes the audit
  rows. The use cases queue runs (this package), so this package imports no job body: the
  table of :mod:`~service.jobs.spec` names them by text, imported when a run executes.

Modules, from the bottom up: :mod:`~service.jobs.spec` (what a job is, the registry),
:mod:`~service.jobs.queue` (runs, claims, history), :mod:`~service.jobs.lease` (the scheduler
lease), :mod:`~service.jobs.context` (what a job function gets; the fence),
:mod:`~service.jobs.worker` (isolated runs in a child process), :mod:`~service.jobs.runner`
(executing a claimed run) and :mod:`~service.jobs.scheduler`. Everything is importable from
``service.jobs``.
"""

from __future__ import annotations

from service.jobs.context import JobContext, call
from service.jobs.lease import acquire_lease, lock_holder, release_lock, try_lock
from service.jobs.queue import (
    claim,
    enqueue,
    finish,
    get_run,
    interrupt_stale,
    last_runs,
    list_runs,
)
from service.jobs.runner import execute, run_pending
from service.jobs.scheduler import Scheduler, fire
from service.jobs.spec import (
    FINAL,
    JOBS,
    SCHEDULER_LOCK,
    JobError,
    JobSpec,
    WorkerError,
    register_job,
    resolve,
)
from service.jobs.worker import (
    isolation,
    job_threads,
    memory_limit_mb,
    run_in_worker,
    run_request,
)

__all__ = [
    "FINAL", "JOBS", "SCHEDULER_LOCK", "JobContext", "JobError", "JobSpec", "Scheduler",
    "WorkerError", "acquire_lease", "call", "claim", "enqueue", "execute", "finish", "fire",
    "get_run", "interrupt_stale", "isolation", "job_threads", "last_runs", "list_runs",
    "lock_holder", "memory_limit_mb", "register_job", "release_lock", "resolve",
    "run_in_worker", "run_pending", "run_request", "try_lock",
]
