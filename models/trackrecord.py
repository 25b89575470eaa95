"""Stored backtest forecasts and the retrospective track record built from them.

Two things need the raw (uncalibrated) forecasts Vigie would have made on past Mondays, each
from the cube as known that day: the conformal calibration of every new forecast (the errors
of the last 10 weekly / 26 daily-target origins) and the retrospective track record shown on
the accuracy page (a rolling-origin backtest over the whole history). Both read them from one
:class:`BacktestStore`, so each past forecast is fitted once per home, model version and cube
vintage, not at every refresh:

    $VIGIE_HOME/models/backtests/<target>_<frequency>/<plan key>/<level>/<date>_<vintage>.parquet

The plan key names the model version and a hash of its members' versions and settings
(:func:`models.forecasting.level_plan`); the vintage is the one the cube serves as of that date
(:meth:`features.store.CubeStore.vintage_at`): a stored forecast is used only while the cube
would still give the same inputs, so it is exactly what a new backtest would compute.

:func:`compute_track_record` scores them (models/scoring: relative WIS against the Hub
baseline, 50 % and 90 % coverage by horizon) over a development period (forecast dates before
2021-03-01, on which the models were chosen, docs/MODELS.md) and the held-out dates after it,
for every target and level the service publishes, and writes
``$VIGIE_HOME/models/retrospective.json``; :func:`load_retrospective` reads its rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.storage.atomic import atomic_path, atomic_write_json
from models.backtest import monday_dates
from models.calibration import QCOLS, ConformalCalibrator, calibrate_rows
from models.forecasting import DateTask, LevelPlan, level_plan, run_date_tasks
from models.preparation import default_opener, warmup_dates
from models.registry import get_registry
from models.scoring import median_territory_rel_wis, score_table, summarise
from models.targets import Target, resolve_target

log = logging.getLogger(__name__)

#: First forecast date of the track record and start of the held-out period (as in
#: bench/backtest_report.py and docs/MODELS.md: the models were chosen on the dates before).
START = "2020-09-07"
SPLIT = "2021-03-01"
#: Fields of every row :func:`load_retrospective` returns (the accuracy page's contract).
ROW_FIELDS = ("target", "frequency", "level", "period", "start", "end", "horizon",
              "relative_wis", "coverage_50", "coverage_90", "n_forecasts", "model",
              "model_version", "computed_at")
_KEYS = ["model", "forecast_date", "territory", "horizon", "target_end_date"]


# -- the store of past forecasts --------------------------------------------------------------
class BacktestStore:
    """Raw forecasts of past dates, one file per target, plan, level and date.

    Parameters
    ----------
    root:
        ``Settings.models_dir`` (files go under ``backtests/``; temporary files are written
        in ``root`` itself, where the home's sweep of dead writers' ``*.tmp`` looks).
    """

    def __init__(self, root: Path) -> None:
        self.models_dir = Path(root)
        self.root = self.models_dir / "backtests"

    @classmethod
    def from_settings(cls, settings: Any) -> BacktestStore:
        return cls(Path(settings.models_dir))

    def _folder(self, target: Target, plan_key: str, level: str) -> Path:
        return self.root / f"{target.name}_{target.frequency}" / plan_key / level

    def available(self, target: Target, plan_key: str, level: str) -> dict[pd.Timestamp, Path]:
        """Stored date → file (the vintage is in the file name: ``<date>_<vintage>``)."""
        folder = self._folder(target, plan_key, level)
        if not folder.exists():
            return {}
        return {pd.Timestamp(p.name[:10]): p for p in folder.glob("*.parquet")}

    def missing(self, target: Target, plan_key: str, level: str, dates: Iterable[pd.Timestamp],
                vintage_of: Callable[[pd.Timestamp], str]) -> list[pd.Timestamp]:
        """The dates without a stored forecast made from the vintage served as of that date."""
        have = self.available(target, plan_key, level)
        out = []
        for d in dates:
            d = pd.Timestamp(d)
            path = have.get(d)
            if path is None or path.stem[11:] != vintage_of(d):
                out.append(d)
        return out

    def save(self, target: Target, plan_key: str, level: str, forecast_date: pd.Timestamp,
             vintage_id: str, rows: pd.DataFrame) -> Path:
        """Store one date's rows (possibly none: no history yet) atomically; a file of the
        same date from another vintage is replaced."""
        folder = self._folder(target, plan_key, level)
        folder.mkdir(parents=True, exist_ok=True)
        day = pd.Timestamp(forecast_date).date().isoformat()
        final = folder / f"{day}_{vintage_id}.parquet"
        with atomic_path(final, temp_dir=self.models_dir) as tmp:
            rows.drop(columns=["level"], errors="ignore").to_parquet(tmp, index=False)
        for old in folder.glob(f"{day}_*.parquet"):
            if old != final:
                old.unlink(missing_ok=True)
        return final

    def load(self, target: Target, plan_key: str, level: str,
             dates: Iterable[pd.Timestamp]) -> pd.DataFrame:
        """The stored rows of these dates (those stored; see :meth:`missing`)."""
        have = self.available(target, plan_key, level)
        frames = [pd.read_parquet(have[pd.Timestamp(d)]) for d in dates
                  if pd.Timestamp(d) in have]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=[*_KEYS, *QCOLS])
        rows = pd.concat(frames, ignore_index=True)
        rows["forecast_date"] = pd.to_datetime(rows["forecast_date"])
        rows["target_end_date"] = pd.to_datetime(rows["target_end_date"])
        rows["territory"] = rows["territory"].astype(str)
        return rows


def vintage_resolver(settings: Any) -> Callable[[pd.Timestamp], str]:
    """Date → id of the vintage the cube serves as of that date (cached per date)."""
    from features.store import CubeStore

    store = CubeStore(settings)
    cache: dict[pd.Timestamp, str] = {}

    def vintage_of(day: pd.Timestamp) -> str:
        day = pd.Timestamp(day)
        if day not in cache:
            cache[day] = str(store.vintage_at(day.date())["id"])
        return cache[day]

    return vintage_of


def missing_tasks(store: BacktestStore, target: Target, plan: LevelPlan,
                  dates: Iterable[pd.Timestamp], vintage_of: Callable[[pd.Timestamp], str],
                  tag: Any = None) -> list[DateTask]:
    """One task per date that lacks a stored forecast at some level of the plan (fitting only
    those levels, pooled members once for all of them)."""
    by_date: dict[pd.Timestamp, list[str]] = {}
    for level in plan.members:
        for d in store.missing(target, plan.key, level, dates, vintage_of):
            by_date.setdefault(d, []).append(level)
    return [DateTask(target, d, plan.for_levels(levels), target.horizons, tag)
            for d, levels in sorted(by_date.items())]


def store_task_result(store: BacktestStore, task: DateTask, result: tuple,
                      vintage_of: Callable[[pd.Timestamp], str]) -> None:
    """Store what a :class:`DateTask` computed, level by level: the model's and the baseline's
    rows (what calibration and scores read; the members' would triple the files). A level
    with no history that day is stored empty: nothing to compute there next time."""
    rows, meta = result
    if len(rows):
        rows = rows[rows["model"].isin([task.plan.model_name, "baseline"])]
    for level in task.plan.members:
        vintage = meta.get(level, {}).get("vintage_id") or vintage_of(task.forecast_date)
        part = rows[rows["level"] == level] if len(rows) else rows
        store.save(task.target, task.plan.key, level, task.forecast_date, vintage, part)


# -- the retrospective track record -----------------------------------------------------------
def scored_dates(target: Target, last_observed: pd.Timestamp, start: str = START
                 ) -> list[pd.Timestamp]:
    """Mondays from ``start`` whose every horizon is observed by ``last_observed``."""
    last = pd.Timestamp(last_observed)
    return [d for d in monday_dates(start, last)
            if target.end_date(d, max(target.horizons)) <= last]


def compute_track_record(settings: Any, targets: Iterable[tuple[str, str]], *,
                         model: str = "ensemble", start: str = START, split: str = SPLIT,
                         client: Any = None, client_for: Callable[[int], Any] | None = None,
                         on_task: Callable[[DateTask, BaseException | None], None] | None = None,
                         on_plan: Callable[[int], None] | None = None,
                         write: bool = True) -> dict:
    """Backtest every target at every level (stored forecasts reused, missing ones fitted on
    the Dask ``client``), calibrate as served, score, and write the retrospective file.

    Parameters
    ----------
    targets:
        (name, frequency) pairs; every level of each.
    client, client_for:
        A Dask client, or a function of the number of dates to fit returning a context
        manager that yields one (or None: fit here), entered only when something is missing.
    on_plan, on_task:
        Progress: the number of date tasks to fit, then each one as it ends (with its error).
    write:
        Write ``$VIGIE_HOME/models/retrospective.json`` (only while a job still owns its run).

    Returns
    -------
    The file's content: ``computed_at``, ``model``, ``model_version``, ``vintage_id`` (the
    current cube's), ``start``, ``split``, ``rows`` (see :data:`ROW_FIELDS`), ``failed``
    (target/level whose forecasts could not all be made) and ``pending`` (empty: the file
    is rewritten target by target, in the order of ``targets``, while the others are still
    being fitted, with ``pending`` naming those; :func:`is_current` is False until it is
    empty).
    """
    from features.store import CubeStore

    registry = get_registry(settings)
    spec = registry.get(model)
    opener = default_opener(settings)
    store = BacktestStore.from_settings(settings)
    vintage_of = vintage_resolver(settings)
    current = str(CubeStore(settings).current_vintage()["id"])
    computed_at = datetime.now(UTC).isoformat(timespec="seconds")
    jobs = _track_record_jobs(targets, model, start, registry, opener)
    tasks_of = {key: missing_tasks(store, job["target"], job["plan"], job["all"], vintage_of)
                for key, job in jobs.items()}
    tasks = [task for key in jobs for task in tasks_of[key]]
    if on_plan is not None:
        on_plan(len(tasks))
    record = _Progressive(settings, jobs, store, _Outcomes(settings, vintage_of), write, {
        "computed_at": computed_at, "model": spec.name, "model_version": spec.version,
        "vintage_id": current, "start": start, "split": split,
        "relative_wis": "France: ratio of mean WIS to the Hub baseline's on the same "
                        "forecasts; régions and départements: median over territories "
                        "of that ratio. Coverage: share of all forecasts."}, model)
    record.expect({key: len(found) for key, found in tasks_of.items()})

    def _ended(task: DateTask, error: BaseException | None) -> None:
        record.task_done(task, error)  # before the caller's progress: the file is current
        if on_task is not None:
            on_task(task, error)

    _run_missing(tasks, store, opener, vintage_of, client, client_for, _ended)
    return record.finish()


class _Progressive:
    """The track record published target by target: a target is scored and the file
    rewritten as soon as its last missing date is fitted (targets with nothing to fit at
    once), so the accuracy page shows the first targets' scores while the others are still
    being fitted; ``pending`` names those, and the file is complete when it is empty.

    Scores of a target depend only on its own stored forecasts, so publishing it early gives
    the same rows as scoring everything at the end."""

    def __init__(self, settings: Any, jobs: dict[tuple[str, str], dict], store: BacktestStore,
                 outcomes: _Outcomes, write: bool, header: dict, model: str) -> None:
        self.settings, self.jobs, self.store, self.outcomes = settings, jobs, store, outcomes
        self.write, self.header, self.model = write, header, model
        self.left: dict[tuple[str, str], int] = {}
        self.failed_levels: set[tuple[str, str, str]] = set()
        self.rows: dict[tuple[str, str], list[dict]] = {}
        self.failed: dict[tuple[str, str], list[dict]] = {}

    def expect(self, missing: dict[tuple[str, str], int]) -> None:
        """Record how many dates each target still needs; score those that need none."""
        self.left = dict(missing)
        ready = [key for key, n in self.left.items() if n == 0]
        for key in ready:
            self._score(key)
        if ready and len(ready) < len(self.jobs):
            self._publish()

    def task_done(self, task: DateTask, error: BaseException | None) -> None:
        key = (task.target.name, task.target.frequency)
        if error is not None:
            self.failed_levels.update((*key, level) for level in task.plan.members)
        self.left[key] -= 1
        if self.left[key] == 0:
            self._score(key)
            if len(self.rows) < len(self.jobs):
                self._publish()

    def _score(self, key: tuple[str, str]) -> None:
        one = {key: self.jobs[key]}
        self.rows[key], self.failed[key] = _score_jobs(
            one, self.failed_levels, self.store, self.outcomes, self.model,
            self.header["model_version"], self.header["split"], self.header["computed_at"])

    def payload(self) -> dict:
        order = list(self.jobs)
        pending = [{"target": name, "frequency": frequency} for name, frequency in order
                   if (name, frequency) not in self.rows]
        return {**self.header,
                "rows": [row for key in order for row in self.rows.get(key, [])],
                "failed": [row for key in order for row in self.failed.get(key, [])],
                "pending": pending}

    def _publish(self) -> None:
        if self.write:
            write_retrospective(self.settings, self.payload())

    def finish(self) -> dict:
        """Score what is left (a target whose tasks were never reported), write, return."""
        for key in self.jobs:
            if key not in self.rows:
                self._score(key)
        payload = self.payload()
        if self.write:
            write_retrospective(self.settings, payload)
        return payload


def _track_record_jobs(targets: Iterable[tuple[str, str]], model: str, start: str,
                       registry: Any, opener: Callable) -> dict[tuple[str, str], dict]:
    """Per (target, frequency) with outcomes: its plan, scored dates and warm-up dates."""
    jobs: dict[tuple[str, str], dict] = {}
    for name, frequency in targets:
        target = resolve_target(name, frequency, opener)
        calibration = ConformalCalibrator.for_frequency(target.frequency)
        ds = opener(target.frequency, None)
        observed = ds[target.variable].notnull().any("territory").values
        if not observed.any():
            log.warning("track record: no %s (%s) data, skipped", name, frequency)
            continue
        last = pd.Timestamp(ds["date"].values[np.flatnonzero(observed)[-1]])
        dates = scored_dates(target, last, start)
        if not dates:
            log.warning("track record: no %s (%s) forecast date after %s has an outcome yet",
                        name, frequency, start)
            continue
        warm = warmup_dates(target, dates[0], calibration.window, 7)
        plan = level_plan(model, target, target.levels, registry)
        jobs[(name, frequency)] = {"target": target, "plan": plan, "dates": dates,
                                   "all": [*warm, *dates], "calibration": calibration}
    return jobs


def _run_missing(tasks: list[DateTask], store: BacktestStore, opener: Callable,
                 vintage_of: Callable[[pd.Timestamp], str], client: Any,
                 client_for: Callable[[int], Any] | None,
                 on_task: Callable[[DateTask, BaseException | None], None]) -> None:
    """Fit the missing dates and store each as it ends (a failure is logged), calling
    ``on_task(task, error)`` for each."""

    def _done(task: DateTask, result, error) -> None:
        if error is None:
            store_task_result(store, task, result, vintage_of)
        else:
            log.error("backtest %s (%s) %s failed: %s", task.target.name,
                      task.target.frequency, task.forecast_date.date(), error)
        on_task(task, error)

    if client is None and client_for is not None and tasks:
        with client_for(len(tasks)) as made:
            run_date_tasks(tasks, opener, client=made, on_done=_done)
    else:
        run_date_tasks(tasks, opener, client=client, on_done=_done)


def _score_jobs(jobs: dict[tuple[str, str], dict], failed_tasks: set[tuple[str, str, str]],
                store: BacktestStore, outcomes: _Outcomes, model: str, version: str,
                split: str, computed_at: str) -> tuple[list[dict], list[dict]]:
    """Rows of every target and level from the stored forecasts, and the levels that failed."""
    rows: list[dict] = []
    failed: list[dict] = []
    for (name, frequency), job in jobs.items():
        target, plan = job["target"], job["plan"]
        for level in target.levels:
            if (name, frequency, level) in failed_tasks:
                failed.append({"target": name, "frequency": frequency, "level": level})
                continue
            raw = store.load(target, plan.key, level, job["all"])
            raw = raw[raw["model"].isin([model, "baseline"])]
            if raw.empty:
                continue
            rows += _score_level(raw, target, level, job["dates"], outcomes,
                                 job["calibration"], model, version, split, computed_at)
    return rows, failed


class _Outcomes:
    """Observed values of a target as known as of a date, read once per vintage.

    As of ``d`` the cube serves vintage ``vintage_of(d)`` without the dates on or after ``d``;
    calibration as of ``d`` only reads outcomes dated before ``d``, so the vintage's whole
    series gives the same values (``calibrate_backtest`` opens the cube at every date: the
    same numbers, read ~100 times per target and level)."""

    def __init__(self, settings: Any, vintage_of: Callable[[pd.Timestamp], str]) -> None:
        from features.store import CubeStore

        self.store = CubeStore(settings)
        self.vintage_of = vintage_of
        self.cache: dict[tuple[str, str, str], pd.DataFrame] = {}

    def of_vintage(self, target: Target, vintage: str) -> pd.DataFrame:
        key = (target.frequency, target.variable, vintage)
        if key not in self.cache:
            ds = self.store.open(target.frequency, vintage_id=vintage)
            known = ds[target.variable].to_series().rename("observed").reset_index()
            known["territory"] = known["territory"].astype(str)
            self.cache[key] = known.rename(columns={"date": "target_end_date"})
        return self.cache[key]

    def latest(self, target: Target) -> pd.DataFrame:
        return self.of_vintage(target, str(self.store.current_vintage()["id"]))


def calibrate_stored(raw: pd.DataFrame, target: Target, first: pd.Timestamp,
                     outcomes: _Outcomes, calibration: ConformalCalibrator) -> pd.DataFrame:
    """:func:`models.backtest.calibrate_backtest` (the same rows) with outcomes read once
    per vintage: each date's forecasts calibrated with the errors of earlier ones whose
    targets were observed before it, as known then; kept from ``first``; ``observed`` from
    the current cube."""
    is_base = raw["model"] == "baseline"
    out = [raw[is_base], raw[~is_base].assign(model=raw["model"] + "_raw")]
    to_calibrate = raw[~is_base]
    merged: dict[str, dict[str, pd.DataFrame]] = {}
    for fd, current in to_calibrate.groupby("forecast_date", sort=True):
        if fd < first:
            continue
        vintage = outcomes.vintage_of(fd)
        if vintage not in merged:
            known = to_calibrate.merge(outcomes.of_vintage(target, vintage),
                                       on=["territory", "target_end_date"], how="left")
            merged[vintage] = dict(iter(known.groupby("model", sort=False)))
        # The calibrator keeps the rows made and ended before ``fd`` itself.
        for name, rows in current.groupby("model", sort=False):
            out.append(calibrate_rows(rows, merged[vintage][name], fd, calibration))
    result = pd.concat(out, ignore_index=True)
    result = result[result["forecast_date"] >= first]
    return result.merge(outcomes.latest(target), on=["territory", "target_end_date"],
                        how="left")


def _score_level(raw: pd.DataFrame, target: Target, level: str, dates: list[pd.Timestamp],
                 outcomes: _Outcomes, calibration: ConformalCalibrator, model: str,
                 version: str, split: str, computed_at: str) -> list[dict]:
    """Calibrate (each date with the errors known then, as served) and score one level."""
    result = calibrate_stored(raw[_KEYS + QCOLS], target, dates[0], outcomes, calibration)
    result = result[result["forecast_date"] <= dates[-1]]
    scored = score_table(result[result["model"].isin([model, "baseline"])], QCOLS)
    if scored.empty:
        return []
    cut = pd.Timestamp(split)
    out = []
    for period, part in (("development", scored[scored["forecast_date"] < cut]),
                         ("held_out", scored[scored["forecast_date"] >= cut])):
        if part.empty or not (part["model"] == model).any():
            continue
        pooled = summarise(part, ["horizon"])
        pooled = pooled[pooled["model"] == model].set_index("horizon")
        if level == "national":
            rel = pooled["rel_wis"]
        else:
            med = median_territory_rel_wis(part, ["horizon"])
            rel = med[med["model"] == model].set_index("horizon")["rel_wis"]
        mine = part[part["model"] == model]
        for h, row in pooled.iterrows():
            value = rel.get(h)
            out.append({
                "target": target.name, "frequency": target.frequency, "level": level,
                "period": period,
                "start": mine["forecast_date"].min().date().isoformat(),
                "end": mine["forecast_date"].max().date().isoformat(),
                "horizon": int(h),
                "relative_wis": None if value is None or not np.isfinite(value)
                else round(float(value), 3),
                "coverage_50": round(float(row["cov50"]), 3),
                "coverage_90": round(float(row["cov90"]), 3),
                "n_forecasts": int(row["n"]),
                "model": model, "model_version": version, "computed_at": computed_at,
            })
    return out


def retrospective_path(settings: Any) -> Path:
    return Path(settings.retrospective_file)


def write_retrospective(settings: Any, payload: dict) -> Path:
    """Write the file atomically (only while a job that computes it still owns its run)."""
    return atomic_write_json(retrospective_path(settings), payload, ensure_ascii=False,
                             indent=1, publish=True)


def read_retrospective(settings: Any) -> dict | None:
    """The whole file (rows and what they were computed from), or None before it exists."""
    path = retrospective_path(settings)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def pending_targets(settings: Any) -> list[dict]:
    """The (target, frequency) pairs the file does not score yet (empty once complete)."""
    payload = read_retrospective(settings) or {}
    return [{"target": str(p.get("target")), "frequency": str(p.get("frequency"))}
            for p in payload.get("pending") or [] if isinstance(p, dict)]


def load_retrospective(settings: Any) -> list[dict] | None:
    """Rows of the retrospective track record (:data:`ROW_FIELDS`), or None while it has not
    been computed yet (the accuracy page then says it is being computed)."""
    payload = read_retrospective(settings)
    if payload is None:
        return None
    return [{k: row.get(k) for k in ROW_FIELDS} for row in payload.get("rows", [])]


def is_current(settings: Any, model: str = "ensemble") -> bool:
    """Whether the file exists and was computed with the current vintage and this model's
    current version (otherwise the track record job should run)."""
    from features.errors import NoVintageError
    from features.store import CubeStore

    payload = read_retrospective(settings)
    if payload is None:
        return False
    try:
        current = str(CubeStore(settings).current_vintage()["id"])
        version = get_registry(settings).get(model).version
    except (NoVintageError, KeyError):
        return False
    return payload.get("vintage_id") == current and payload.get("model_version") == version \
        and payload.get("model") == model.split("@")[0] and not payload.get("pending")
