"""The jobs' bodies: each parses its parameters, calls one use case (:mod:`service.usecases`)
with the run's settings, and returns the run's result; follow-ups are queued through the run's
context (fenced). The use cases write the audit rows, whoever calls them.

The table of jobs (names, schedules, attempts, isolation) is :data:`service.jobs.spec.JOBS`,
naming these functions by text (``service.job_bodies:job_forecast``): the job machinery
(:mod:`service.jobs`) sits below the use cases, which queue runs, and these bodies above them.
"""

from __future__ import annotations

from service.jobs.context import JobContext
from service.jobs.spec import JobError


def job_ingest(ctx: JobContext, force: bool = False, data_dir: str | None = None,
               forecast_params: dict | None = None, upload: str | None = None) -> dict:
    """Ingest the data directory and the uploads in force; settle the uploads it read
    (``uploads``: each one in force with the vintage made, or undone with the ingest's reason;
    ``upload`` names the upload that queued this run); queue a forecast refresh when a new
    vintage was written, and another ingest when an undone upload put older ones back.

    ``forecast_params`` are passed to that forecast run (default: the ensemble, every target).
    """
    from service.usecases.uploads import ingest_or_undo, settle_uploads

    report = ingest_or_undo(ctx.settings, data_dir=data_dir, force=bool(force),
                            actor="job:ingest")
    settled = settle_uploads(ctx.settings, report, actor="job:ingest")
    result = {"outcome": report.outcome, "vintage_id": report.vintage_id,
              "message": report.message,
              "failed_sources": [s.source for s in report.failed],
              "upload": upload, "uploads": settled["settled"]}
    if settled["restored"]:
        result["ingest_run"] = ctx.enqueue("ingest", {})
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
    from service.usecases.backtests import refresh_leaderboard

    return refresh_leaderboard(ctx.settings, model=model, target=target, frequency=frequency,
                               level=level, weeks=weeks)


def job_scenario(ctx: JobContext, name: str | None = None, definition: dict | None = None,
                 as_of: str | None = None) -> dict:
    """Run a scenario (library name or definition) on the current cube; store its result."""
    from service.usecases.scenarios import run_and_store

    return run_and_store(ctx.settings, ctx.run_id, name=name, definition=definition,
                         as_of=as_of)


def job_prune(ctx: JobContext, dry_run: bool = False) -> dict:
    """Apply the retention policy to vintages and forecast runs (:mod:`service.retention`)."""
    from service.usecases.maintenance import prune

    return prune(ctx.settings, dry_run=bool(dry_run), actor="job:prune").summary()
