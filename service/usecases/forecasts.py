"""Publish forecasts, and the retrospective track record beside them.

:func:`publish_forecasts` is the one way forecasts of the default targets reach the public:
``python -m service forecast-all`` (``make run``), the ``forecast`` job queued after each new
cube vintage and the notebooks (through that job) all call it, with one target list,
:func:`published_targets` (the hospital targets, unemployment and every city indicator of the
served vintage). :func:`publish_run` is the one way any forecast run is made public
(``forecast --save`` calls it too): stored atomically, then exactly one audit row carrying the
cube vintage and model version the forecast was made from.

Why it is fast enough for ``make run``:

* every level of a target is forecast from one fit of the members that pool the hierarchy
  (``gbm``, ``growth``), not one per level (:func:`models.forecasting.levels_date_rows`);
* calibration reads the raw forecasts of past dates from the store of backtest forecasts
  (:class:`models.trackrecord.BacktestStore`), fitting only the dates not stored yet, and the
  retrospective track record reads the same files;
* a target × level whose latest stored run was made on the same date, from the same vintage,
  by the same model version is left as it is;
* all the date fits of all targets go to the Dask workers at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from features import fencing
from service.usecases import Progress

log = logging.getLogger(__name__)

#: What the pages and the API show by default, at every level each target exists at: weekly
#: hospital and ICU admissions, hospital and ICU beds occupied at 7 and 14 days (the capacity
#: alerts of /api/v1/alerts read the daily ``icu`` run), weekly emergency visits.
PUBLISHED_TARGETS: tuple[tuple[str, str], ...] = (
    ("inc_hosp", "weekly"), ("inc_icu", "weekly"), ("hosp", "daily"), ("icu", "daily"),
    ("er_visits", "weekly"),
)
#: Published beside those (social services): the quarterly unemployment rate.
SOCIAL_TARGETS: tuple[tuple[str, str], ...] = (("unemployment", "quarterly"),)
#: Sources whose every count or rate is published too, at its own frequency: a city's own
#: indicators (food-aid requests, 115 calls…), as soon as its file is in the served vintage.
PUBLISHED_SOURCES: tuple[str, ...] = ("city_indicators",)
#: Below this many date fits a Dask cluster (~3 s to start) costs more than it saves.
MIN_TASKS_FOR_DASK = 3


@dataclass
class Outcome:
    """What happened to one target × level."""

    target: str
    frequency: str
    level: str
    status: str  # published | unchanged | failed
    as_of: str | None = None
    run_id: str | None = None
    vintage_id: str | None = None
    model_version: str | None = None
    error: str | None = None


@dataclass
class PublishReport:
    outcomes: list[Outcome] = field(default_factory=list)
    fitted_dates: int = 0
    reused_dates: int = 0
    elapsed_s: float = 0.0

    def with_status(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    def to_dict(self) -> dict:
        return {"runs": [o.run_id for o in self.with_status("published")],
                "unchanged": [f"{o.target}/{o.frequency}/{o.level}"
                              for o in self.with_status("unchanged")],
                "failed": [{"target": o.target, "frequency": o.frequency, "level": o.level,
                            "error": o.error} for o in self.with_status("failed")],
                "fitted_dates": self.fitted_dates, "reused_dates": self.reused_dates,
                "elapsed_s": round(self.elapsed_s, 1)}


def publish_run(engine: Any, rows: pd.DataFrame, metadata: dict, *, actor: str,
                store: Any = None, settings: Any = None):
    """Make one forecast run public: stored atomically (only while a job that publishes it
    still owns its run), then one audit row with the run's vintage and model version.

    Parameters
    ----------
    rows:
        Hub CSV rows.
    metadata:
        As :meth:`models.store.ForecastStore.save` wants it; ``vintage_id`` must be the
        vintage the forecast was read from (not the current one) and ``model_version`` the
        version that made it.
    actor:
        Who publishes (``cli:forecast-all``, ``cli:forecast``, ``job:forecast`` …).
    """
    from models.store import ForecastStore
    from service.audit import record_publication

    store = store or ForecastStore.from_settings(settings)
    fencing.check()  # a job that lost its run stops before writing anything
    run = store.save(rows, metadata)
    record_publication(engine, run.metadata, actor=actor)
    return run


def fit_client(settings: Any = None, parallel: bool = True):
    """Where the command line fits: :func:`fit_cluster` or, not ``parallel``, this process on
    one thread (a context manager)."""
    from features.settings import Settings
    from models.parallel import one_thread

    if not parallel:
        return one_thread()
    return fit_cluster(settings or Settings.from_env())


@contextmanager
def fit_cluster(settings: Any, nice: int = 0):
    """The Dask client every use case fits on: the scheduler at ``VIGIE_DASK_ADDRESS``
    (``settings.dask_address``), else a local cluster whose workers run at CPU priority
    ``nice`` (with a dashboard only at ``VIGIE_DASK_DASHBOARD``). Its workers and dashboard
    address are logged.

    The fits' data is sent with each task (:mod:`models.parallel`): a remote worker needs the
    Vigie package installed, not Vigie's home.
    """
    from models.parallel import dask_client

    with dask_client(settings.dask_address or None, nice=nice,
                     dashboard=settings.dask_dashboard) as client:
        workers = client.scheduler_info().get("workers", {})
        link = client.dashboard_link if settings.dask_address or settings.dask_dashboard \
            else "off (VIGIE_DASK_DASHBOARD unset)"
        log.info("Dask: %d workers (%s), dashboard %s",
                 len(workers), settings.dask_address or "local cluster", link)
        yield client


def _uses_cluster(settings: Any, parallel: bool, n_tasks: int) -> bool:
    """Fit on Dask: a scheduler is configured (connecting costs nothing) or there are enough
    date fits to pay for starting a local cluster."""
    return parallel and n_tasks > 0 and (bool(settings.dask_address)
                                         or n_tasks >= MIN_TASKS_FOR_DASK)


def forecast_target(settings: Any, target: Any, level: str, *, as_of: Any = None,
                    model: str = "ensemble", territories: list[str] | None = None,
                    horizons: tuple[int, ...] | None = None, calibrate: bool = True,
                    parallel: bool = True,
                    opener: Any = None) -> tuple[pd.DataFrame, dict, pd.Timestamp]:
    """Forecast one target at one level (``python -m service forecast``), unpublished: Hub CSV
    rows, their metadata (the vintage read, model version, parameters, elapsed seconds), ready
    for :func:`publish_run`, and the forecast date.

    ``as_of``: the forecast date (default: the day after the latest observation at that
    level, the next Monday for weekly targets).
    """
    from models.forecasting import forecast
    from models.preparation import default_opener
    from models.registry import get_registry
    from models.targets import to_hub

    opener = opener or default_opener(settings)
    fd = pd.Timestamp(as_of) if as_of else default_forecast_date(target, level, opener)
    registry = get_registry(settings)
    started = time.perf_counter()
    with fit_client(settings, parallel) as client:
        fc, meta = forecast(target, level, fd, model, opener, territories=territories,
                            horizons=horizons or target.horizons, calibrate=calibrate,
                            client=client, registry=registry)
    rows = to_hub(fc, target, fd)
    spec = registry.get(model)
    meta.update(target=target.name, frequency=target.frequency, level=level,
                model=spec.name, model_version=spec.version, params=spec.params,
                territories=territories or "all",
                elapsed_s=round(time.perf_counter() - started, 1))
    return rows, meta, fd


def default_forecast_date(target: Any, level: str, opener: Any) -> pd.Timestamp:
    """The day after the latest observation at that level (the next Monday for weekly
    targets, the Hub's forecast day)."""
    from models.preparation import prepare

    y, _ = prepare(opener(target.frequency, None), target, level)
    if y.sizes["date"] == 0:
        from models.preparation import NoHistoryError

        raise NoHistoryError(f"no {target.variable} ({target.frequency}) data at level {level}")
    day = pd.Timestamp(y["date"].values[-1]) + pd.Timedelta(days=1)
    if target.unit == "wk":
        day += pd.Timedelta(days=(0 - day.weekday()) % 7)
    return day


def _unchanged(run: Any, fd: pd.Timestamp, vintage: str, spec: Any, calibrate: bool) -> bool:
    if run is None:
        return False
    meta = run.metadata
    return (meta.get("as_of") == fd.date().isoformat() and meta.get("vintage_id") == vintage
            and meta.get("model") == spec.name and meta.get("model_version") == spec.version
            and bool(meta.get("calibrated")) == bool(calibrate))


def published_targets(settings: Any, opener: Any = None) -> list[tuple[str, str]]:
    """What the scheduled refresh forecasts: :data:`PUBLISHED_TARGETS`, :data:`SOCIAL_TARGETS`
    and a target per count or rate indicator of :data:`PUBLISHED_SOURCES` in the served
    vintage (its name and frequency; a city indicator whose file stopped coming stays in the
    cube, so stays published). Without a vintage: the built-in ones."""
    from features.errors import NoVintageError
    from features.store import CubeStore
    from models.preparation import default_opener
    from models.targets import resolve_target

    out = [*PUBLISHED_TARGETS, *SOCIAL_TARGETS]
    try:
        sources = CubeStore(settings).manifest().get("sources") or {}
    except (NoVintageError, LookupError, OSError):
        return out
    names = sorted({str(n) for entry in sources.values() if isinstance(entry, dict)
                    and entry.get("source") in PUBLISHED_SOURCES
                    for n in entry.get("indicators") or []})
    opener = opener or default_opener(settings)
    for name in names:
        try:
            target = resolve_target(name, None, opener)
        except KeyError as exc:  # neither a count nor a rate, or gone: not forecast
            log.info("city indicator %s not forecast: %s", name, exc.args[0])
            continue
        if (target.name, target.frequency) not in out:
            out.append((target.name, target.frequency))
    return out


def find_target(settings: Any, name: str, frequency: str | None = None, opener: Any = None):
    """The target ``name`` (built-in, or derived from the served cube's indicator metadata);
    KeyError saying why when there is none."""
    from models.preparation import default_opener
    from models.targets import resolve_target

    return resolve_target(name, frequency, opener or default_opener(settings))


def _targets(targets: Iterable | None, settings: Any = None) -> list[tuple[str, str]]:
    return [tuple(t) for t in (targets or published_targets(settings))]


def publish_forecasts(settings: Any, *, model: str = "ensemble",
                      targets: Iterable | None = None, levels: Iterable[str] | None = None,
                      as_of: str | pd.Timestamp | None = None, calibrate: bool = True,
                      force: bool = False, parallel: bool = True, nice: int = 0,
                      actor: str = "cli:forecast-all", progress: Progress | None = None,
                      engine: Any = None) -> PublishReport:
    """Forecast every target × level (default: :func:`published_targets` at all their levels)
    and publish each run with its audit row.

    Parameters
    ----------
    model:
        Registry name (``ensemble`` …).
    targets, levels:
        (name, frequency) pairs and levels to restrict to.
    as_of:
        Forecast date (default: the day after each level's latest observation, a Monday for
        weekly targets).
    calibrate:
        Conformal calibration from the errors of past forecasts (stored ones reused).
    force:
        Publish even where the latest run was made on the same date from the same vintage by
        the same model version (otherwise left as it is, ``unchanged``).
    parallel, nice:
        Fit on Dask workers (``VIGIE_DASK_ADDRESS``, else a local cluster, at this CPU
        priority) when there are enough dates to fit.
    actor:
        Written in each audit row.

    Returns
    -------
    A :class:`PublishReport`. A target × level that fails is reported, the others published;
    a job that lost its run stops (:class:`features.fencing.FencedError`).

    Raises
    ------
    features.errors.NoVintageError
        Nothing ingested yet.
    """
    from features.catalog import get_engine
    from features.store import CubeStore
    from models.forecasting import run_date_tasks

    started = time.perf_counter()
    progress = progress or Progress()
    CubeStore(settings).current_vintage()  # NoVintageError, once, before any target
    job = _Publication(settings, model, calibrate, actor, progress,
                       engine or get_engine(settings.database_url), started)
    for name, frequency in _targets(targets, settings):
        job.plan(name, frequency, levels, as_of, force)
    job.announce()
    job.bar = progress.bar(len(job.tasks), "fitting") if job.tasks else None
    context = (fit_cluster(settings, nice=nice)
               if _uses_cluster(settings, parallel, len(job.tasks)) else nullcontext(None))
    try:
        with context as client:
            run_date_tasks(job.tasks, job.opener, client=client, on_done=job.done)
    finally:
        if job.bar is not None:
            job.bar.close()
    job.report.elapsed_s = time.perf_counter() - started
    return job.report


def _one_line(error: BaseException | str) -> str:
    """An error as one terminal line: ``Type: message`` with its line breaks folded."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if isinstance(error, BaseException) else text


class _Publication:
    """One :func:`publish_forecasts` call: what to publish (one group per target and forecast
    date, with its live and past date fits), then each group published as soon as its dates
    are fitted (the past ones stored for the next calibrations)."""

    def __init__(self, settings: Any, model: str, calibrate: bool, actor: str,
                 progress: Progress, engine: Any, started: float) -> None:
        from models.preparation import default_opener
        from models.registry import get_registry
        from models.store import ForecastStore
        from models.trackrecord import BacktestStore, vintage_resolver

        self.model, self.calibrate, self.actor = model, calibrate, actor
        self.progress, self.engine, self.started = progress, engine, started
        self.registry = get_registry(settings)
        self.spec = self.registry.get(model)
        self.opener = default_opener(settings)
        self.forecasts = ForecastStore.from_settings(settings)
        self.backtests = BacktestStore.from_settings(settings)
        self.vintage_of = vintage_resolver(settings)
        self.report = PublishReport()
        self.groups: list[dict] = []  # one per target and forecast date
        self.tasks: list = []
        self.bar: Any = None

    # -- plan: what to publish, which live and past dates to fit
    def plan(self, name: str, frequency: str, levels: Iterable[str] | None,
             as_of: str | pd.Timestamp | None, force: bool) -> None:
        """Plan one target: its levels due for publication grouped by forecast date."""
        from models.calibration import ConformalCalibrator
        from models.forecasting import level_plan
        from models.targets import resolve_target

        try:
            target = resolve_target(name, frequency, self.opener)
        except KeyError as exc:
            log.error("forecast %s (%s): %s", name, frequency, exc.args[0])
            self.report.outcomes.append(Outcome(name, frequency or "", "all", "failed",
                                                error=f"KeyError: {exc.args[0]}"[:500]))
            return
        plan = level_plan(self.model, target, target.levels, self.registry)
        calibration = ConformalCalibrator.for_frequency(target.frequency)
        by_date: dict[pd.Timestamp, list[str]] = {}
        for level in [lv for lv in (levels or target.levels) if lv in target.levels]:
            fd = self._due(target, level, as_of, force)
            if fd is not None:
                by_date.setdefault(fd, []).append(level)
        for fd, lvls in by_date.items():
            self._add_group(target, plan.for_levels(lvls), fd, calibration)

    def _due(self, target: Any, level: str, as_of: str | pd.Timestamp | None,
             force: bool) -> pd.Timestamp | None:
        """The forecast date of ``target`` at ``level`` if it is to be published; None when
        it failed or is unchanged (reported)."""
        name, frequency, spec = target.name, target.frequency, self.spec
        try:
            fd = (pd.Timestamp(as_of).normalize() if as_of
                  else default_forecast_date(target, level, self.opener))
            vintage = self.vintage_of(fd)
        except Exception as exc:
            log.error("forecast %s (%s) %s: %s", name, frequency, level, exc)
            self.report.outcomes.append(Outcome(name, frequency, level, "failed",
                                                error=f"{type(exc).__name__}: {exc}"[:500]))
            return None
        latest = self.forecasts.latest(name, level, spec.name, frequency)
        if not force and _unchanged(latest, fd, vintage, spec, self.calibrate):
            self.report.outcomes.append(Outcome(
                name, frequency, level, "unchanged", fd.date().isoformat(), latest.run_id,
                vintage, spec.version))
            return None
        return fd

    def _add_group(self, target: Any, sub: Any, fd: pd.Timestamp, calibration: Any) -> None:
        from models.forecasting import DateTask, history_dates
        from models.trackrecord import missing_tasks

        past = history_dates(target, fd, calibration.window) if self.calibrate else []
        group = {"target": target, "plan": sub, "fd": fd, "past": past,
                 "calibration": calibration, "pending": 0, "live": None, "error": None}
        self.groups.append(group)
        index = len(self.groups) - 1
        live = DateTask(target, fd, sub, target.horizons, tag=("live", index))
        history = missing_tasks(self.backtests, target, sub, past, self.vintage_of,
                                tag=("history", index))
        self.report.fitted_dates += len(history)
        self.report.reused_dates += len(past) - len(history)
        group["pending"] = 1 + len(history)
        self.tasks += [live, *history]

    def announce(self) -> None:
        """The step line saying what will be published and fitted."""
        report, spec = self.report, self.spec
        n_publish = sum(len(g["plan"].members) for g in self.groups)
        unchanged = len(report.with_status("unchanged"))
        self.progress.step(
            f"forecast {self.model}@{spec.version}: {n_publish} target × level to publish"
            + (f", {unchanged} unchanged (same date, vintage and model version)"
               if unchanged else "")
            + (f"; {len(self.tasks)} dates to fit, {report.reused_dates} past forecasts "
               "reused from the backtest store" if self.tasks else ""))

    # -- fit, store the past dates, publish each target as soon as its dates are in
    def done(self, task: Any, result: Any, error: Any) -> None:
        """A date fitted (or failed): store it, and publish its group once complete."""
        from models.trackrecord import store_task_result

        kind, index = task.tag
        group = self.groups[index]
        if kind == "live":
            group["live"] = result
            if error is None and task.forecast_date.weekday() == 0:
                # A Monday's forecast is next week's calibration history.
                store_task_result(self.backtests, task, result, self.vintage_of)
        elif error is None:
            store_task_result(self.backtests, task, result, self.vintage_of)
        if error is not None:
            log.error("fitting %s (%s) as of %s failed: %s", task.target.name,
                      task.target.frequency, task.forecast_date.date(), _one_line(error))
            group["error"] = group["error"] or error
        if self.bar is not None:
            self.bar.set_postfix_str(f"{task.target.name} {task.forecast_date.date()}")
            self.bar.update(1)
        group["pending"] -= 1
        if group["pending"] == 0:
            self.publish(group)

    def publish(self, group: dict) -> None:
        """Publish each level of a fitted group (one audit row each); a level that fails is
        reported, a lost job run stops everything."""
        target, fd = group["target"], group["fd"]
        for level in group["plan"].members:
            outcome = Outcome(target.name, target.frequency, level, "failed",
                              fd.date().isoformat(), model_version=self.spec.version)
            self.report.outcomes.append(outcome)
            try:
                run, info = self._publish_level(group, level)
            except fencing.FencedError:
                raise
            except Exception as exc:
                outcome.error = _one_line(exc)[:500]
                log.error("forecast %s (%s) %s as of %s failed: %s", target.name,
                          target.frequency, level, fd.date(), outcome.error)
                continue
            outcome.status, outcome.run_id = "published", run.run_id
            outcome.vintage_id = info["vintage_id"]
            self.progress.step(f"published {target.name} ({target.frequency}) {level}, as of "
                               f"{fd.date()}: run {run.run_id}")

    def _publish_level(self, group: dict, level: str) -> tuple[Any, dict]:
        from models.forecasting import calibrate_level
        from models.preparation import rows_to_forecast
        from models.targets import to_hub

        target, fd, model, spec = group["target"], group["fd"], self.model, self.spec
        if group["error"] is not None:
            raise group["error"]
        rows, meta = group["live"]
        mine = rows[(rows["model"] == model) & (rows["level"] == level)] if len(rows) else rows
        if level not in meta or mine.empty:
            raise ValueError(f"no {target.variable} ({target.frequency}) history at "
                             f"level {level} before {fd.date()}")
        info = {"vintage_id": meta[level]["vintage_id"],
                "as_of": fd.date().isoformat(), "calibrated": False}
        if meta[level]["signal_fallbacks"]:
            info["signal_fallbacks"] = meta[level]["signal_fallbacks"]
        if meta[level].get("short_history"):
            info["short_history"] = meta[level]["short_history"]
        if self.calibrate:
            history = self.backtests.load(target, group["plan"].key, level, group["past"])
            fc, cal = calibrate_level(mine, history[history["model"] == model],
                                      self.opener(target.frequency, fd), target, fd,
                                      group["calibration"])
            info.update(calibrated=True, **cal)
        else:
            fc = rows_to_forecast(mine.drop(columns=["level"]))
        info.update(target=target.name, frequency=target.frequency, level=level,
                    model=spec.name, model_version=spec.version, params=spec.params,
                    elapsed_s=round(time.perf_counter() - self.started, 1))
        run = publish_run(self.engine, to_hub(fc, target, fd), info, actor=self.actor,
                          store=self.forecasts)
        return run, info


# -- the retrospective track record -----------------------------------------------------------
def track_record_due(settings: Any, model: str = "ensemble") -> bool:
    """Whether the retrospective file is missing or was computed from another vintage or
    model version than the current ones."""
    from models.trackrecord import is_current

    return not is_current(settings, model)


def refresh_track_record(settings: Any, *, model: str = "ensemble",
                         targets: Iterable | None = None, parallel: bool = True,
                         nice: int = 0, progress: Progress | None = None) -> dict:
    """Compute and write the retrospective track record of every published target and level
    (stored backtest forecasts reused; the missing ones fitted on Dask workers).

    Returns
    -------
    A summary: rows written, dates fitted, failures, elapsed seconds, the file's path.
    """
    from models.trackrecord import compute_track_record, retrospective_path

    started = time.perf_counter()
    progress = progress or Progress()
    state: dict[str, Any] = {"bar": None, "fitted": 0}

    def _plan(n: int) -> None:
        state["fitted"] = n
        progress.step(f"retrospective track record: {n} past forecast dates to fit"
                      if n else "retrospective track record: every past forecast is stored")
        if n:
            state["bar"] = progress.bar(n, "backtest")

    def _task(task, error) -> None:
        if state["bar"] is not None:
            state["bar"].set_postfix_str(f"{task.target.name} {task.forecast_date.date()}")
            state["bar"].update(1)

    def _client_for(n_tasks: int):
        if _uses_cluster(settings, parallel, n_tasks):
            return fit_cluster(settings, nice=nice)
        return nullcontext(None)

    try:
        payload = compute_track_record(settings, _targets(targets, settings), model=model,
                                       client_for=_client_for, on_plan=_plan, on_task=_task)
    finally:
        if state["bar"] is not None:
            state["bar"].close()
    elapsed = time.perf_counter() - started
    progress.step(f"retrospective track record: {len(payload['rows'])} rows written to "
                  f"{retrospective_path(settings)} ({elapsed:.0f} s)")
    return {"rows": len(payload["rows"]), "fitted_dates": state["fitted"],
            "failed": payload["failed"], "elapsed_s": round(elapsed, 1),
            "vintage_id": payload["vintage_id"], "model_version": payload["model_version"],
            "path": str(retrospective_path(settings))}


def queue_track_record(settings: Any, model: str = "ensemble", *,
                       requested_by: str = "cli:forecast-all", engine: Any = None) -> int | None:
    """Queue the ``trackrecord`` job (``serve`` runs it, or ``jobs run``) unless one is
    already queued or running; its run id, or None."""
    from features.catalog import get_engine
    from service.jobs.queue import enqueue, list_runs
    from service.jobs.spec import JOBS

    if "trackrecord" not in JOBS:
        return None
    engine = engine or get_engine(settings.database_url)
    if list_runs(engine, job="trackrecord", status="queued", limit=1)[1] or \
            list_runs(engine, job="trackrecord", status="running", limit=1)[1]:
        return None
    return enqueue(engine, "trackrecord", {"model": model}, requested_by=requested_by)


def track_record_state(settings: Any, engine: Any = None) -> str:
    """Where the retrospective track record stands, for the accuracy page: ``ready`` (the file
    exists), ``running`` / ``queued`` (a ``trackrecord`` job is at work or waiting: « en cours
    de calcul »), ``missing`` (nothing computed nor asked for)."""
    from features.catalog import get_engine
    from models.trackrecord import read_retrospective
    from service.jobs.queue import list_runs

    if read_retrospective(settings) is not None:
        return "ready"
    engine = engine or get_engine(settings.database_url)
    for status in ("running", "queued"):
        if list_runs(engine, job="trackrecord", status=status, limit=1)[1]:
            return status
    return "missing"
