"""What a job is: its :class:`JobSpec`, the registry :data:`JOBS` with the built-in jobs, and
the errors a job run records. The lowest module of :mod:`service.jobs` (no database, no
scheduler, no job body).

The built-in jobs name their functions by text (``service.job_bodies:job_forecast``), as
APScheduler's store names :func:`service.jobs.fire`: the bodies call the use cases, which queue
runs, so the queue must know every job without importing the bodies; :func:`resolve` imports a
body when a run of it executes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

FINAL = ("ok", "failed", "interrupted", "coalesced")
SCHEDULER_LOCK = "scheduler"


class JobError(RuntimeError):
    """A job that ran but did not achieve its purpose (recorded as failed, retried)."""


class WorkerError(JobError):
    """A job run in a child process failed there, or the process died (message says which)."""


@dataclass(frozen=True)
class JobSpec:
    """One kind of job.

    Attributes
    ----------
    func:
        ``func(ctx, **params) -> dict`` (the run's result, JSON-serialisable), or its
        ``"module:name"`` (see :func:`resolve`).
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
    func: Callable[..., dict | None] | str
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


def resolve(func: Callable[..., dict | None] | str) -> Callable[..., dict | None]:
    """A job function, imported when named by text (``"module:name"``)."""
    if callable(func):
        return func
    module, _, name = func.partition(":")
    return getattr(importlib.import_module(module), name)


BODIES = "service.job_bodies"

register_job(JobSpec("ingest", f"{BODIES}:job_ingest",
                     "Ingest the data directory into a new cube vintage",
                     schedule={"trigger": "cron", "hour": 6, "minute": 30},
                     params_doc={"force": "write a vintage even if no input changed"}))
register_job(JobSpec("forecast", f"{BODIES}:job_forecast",
                     "Forecast every target and level into the forecast store (after ingest)",
                     schedule=None, max_attempts=2, isolated=True,
                     params_doc={"model": "registry name (default ensemble)"}))
register_job(JobSpec("trackrecord", f"{BODIES}:job_trackrecord",
                     "Retrospective track record of every published target and level "
                     "(accuracy page; after forecast refreshes)",
                     schedule=None, max_attempts=2, isolated=True,
                     params_doc={"model": "registry name (default ensemble)"}))
register_job(JobSpec("backtest", f"{BODIES}:job_backtest",
                     "Weekly backtest of the models and leaderboard of their scores",
                     schedule={"trigger": "cron", "day_of_week": "mon", "hour": 3},
                     max_attempts=2, isolated=True,
                     params_doc={"model": "registry name, or 'all'"}))
register_job(JobSpec("scenario", f"{BODIES}:job_scenario",
                     "Run a what-if scenario submitted through the API",
                     schedule=None, max_attempts=1, coalesce=False, isolated=True))
register_job(JobSpec("prune", f"{BODIES}:job_prune",
                     "Delete old cube vintages and forecast runs nothing refers to (retention)",
                     schedule={"trigger": "cron", "hour": 4, "minute": 15}, max_attempts=1,
                     params_doc={"dry_run": "say what would be deleted, delete nothing"}))
