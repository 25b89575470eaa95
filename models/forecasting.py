"""Live forecasts: one target and level (:func:`forecast`), or every level of a target for
many dates at once (:class:`LevelPlan`, :func:`levels_date_rows`, :func:`run_date_tasks`),
calibrated with the errors of past forecasts whose outcomes were observed before the forecast
date.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import xarray as xr

from models.backtest import backtest_raw
from models.base import Forecaster
from models.calibration import QCOLS, ConformalCalibrator, forecast_rows
from models.ensemble import Ensemble
from models.parallel import ShippedCubes, one_thread
from models.preparation import (
    CubeOpener,
    NoHistoryError,
    combine_members,
    expand_members,
    observed_rows,
    raw_forecasts,
    rows_to_forecast,
    short_history,
    warmup_dates,
)
from models.registry import Registry, get_registry
from models.targets import LEVELS, Target

log = logging.getLogger(__name__)


def forecast(
    target: Target,
    level: str,
    forecast_date: pd.Timestamp,
    model_name: str,
    opener: CubeOpener,
    *,
    territories: list[str] | None = None,
    horizons: Iterable[int] | None = None,
    calibration: ConformalCalibrator | None = None,
    calibrate: bool = True,
    client: Any = None,
    registry: Registry | None = None,
) -> tuple[xr.DataArray, dict]:
    """A calibrated forecast made on ``forecast_date`` with data dated before it.

    Calibration errors come from a short backtest over the preceding forecast dates
    (window + longest horizon), whose outcomes were all observed before ``forecast_date``.

    Returns
    -------
    (forecast with Hub horizons, metadata: vintage id, fallbacks, calibration factors).
    """
    registry = registry or get_registry()
    horizons = tuple(horizons or target.horizons)
    calibration = calibration or ConformalCalibrator.for_frequency(target.frequency)
    fd = pd.Timestamp(forecast_date).normalize()
    ds = opener(target.frequency, fd)
    model, members = expand_members(model_name, registry, level)
    fcs = raw_forecasts(ds, target, level, fd, members, horizons, territories, client)
    fc = (combine_members(model, fcs, ds, target.variable) if isinstance(model, Ensemble)
          else fcs[model_name])
    meta = {
        "vintage_id": ds.attrs.get("vintage_id", ""),
        "as_of": fd.date().isoformat(),
        "calibrated": False,
    }
    # Leading signals a member dropped or replaced for this fit (not started, stopped, scheme
    # changed): the forecast says what it was made without.
    signal_fallbacks = {name: dict(f.attrs["signal_fallbacks"]) for name, f in fcs.items()
                        if f.attrs.get("signal_fallbacks")}
    if signal_fallbacks:
        meta["signal_fallbacks"] = signal_fallbacks
    if short_history(fcs):
        meta["short_history"] = short_history(fcs)
    if calibrate:
        # Past forecast dates a week apart (also for daily targets: 26 weekly origins of a
        # 14-day forecast cost 28 fits, not 40 daily ones).
        past = warmup_dates(target, fd, calibration.window, 7, horizons)
        hist = backtest_raw(target, level, past, [model_name], opener, territories=territories,
                            horizons=horizons, client=client, registry=registry)
        hist = observed_rows(hist[hist["model"] == model_name], ds, target)
        cal = ConformalCalibrator(calibration.window, calibration.prior_scores,
                                  calibration.max_factor).fit(hist, as_of=fd)
        fc = cal.transform(fc)
        meta["calibrated"] = True
        meta["calibration_factors"] = {
            int(h): [round(float(k), 3) for k in cal.factors(int(h))] for h in horizons
        }
    fc.attrs["model"] = model_name
    return fc, meta


@dataclass
class LevelPlan:
    """What to fit for one model and target at each level.

    Attributes
    ----------
    model_name:
        The model as asked for (``ensemble``, ``gbm``, ``ensemble@1.2``…).
    model:
        Its unfitted forecaster (an :class:`Ensemble` combines ``members``).
    members:
        Level → model key → unfitted forecaster: the members the model combines at that level
        for this target (not those it would discard) and the Hub ``baseline``, the reference
        of every relative score.
    key:
        Identifies the fitted models: ``name@version`` and a hash of every member's kind,
        version and settings (stored forecasts of another member set are never mixed in).
    """

    model_name: str
    model: Forecaster
    members: dict[str, dict[str, Forecaster]]
    key: str

    def for_levels(self, levels: Iterable[str]) -> LevelPlan:
        return LevelPlan(self.model_name, self.model,
                         {lv: self.members[lv] for lv in levels if lv in self.members}, self.key)


def level_plan(model_name: str, target: Target, levels: Iterable[str],
               registry: Registry | None = None) -> LevelPlan:
    """The :class:`LevelPlan` of ``model_name`` for ``target`` at ``levels``."""
    registry = registry or get_registry()
    spec = registry.get(model_name)
    model = registry.create(model_name)
    members: dict[str, dict[str, Forecaster]] = {}
    described: dict[str, Any] = {}
    if isinstance(model, Ensemble):
        model.keys_ = model.member_keys(registry)
    for level in levels:
        chosen: dict[str, Forecaster] = {}
        if isinstance(model, Ensemble):
            combined = {n for kind in LEVELS[level]
                        for n in model.members_for(kind, target.variable)}
            for name, key in model.member_keys(registry, LEVELS[level]).items():
                if name in combined:
                    chosen[key] = registry.create(name, model.member_version(name))
                    member = registry.get(name, model.member_version(name))
                    described[key] = [member.kind, member.version, member.params]
        else:
            chosen[model_name] = model
        if "baseline" not in chosen:
            chosen["baseline"] = registry.create("baseline")
        members[level] = chosen
    baseline = registry.get("baseline")
    described["baseline"] = [baseline.kind, baseline.version, baseline.params]
    described[model_name] = [spec.kind, spec.version, spec.params]
    digest = hashlib.sha1(json.dumps(described, sort_keys=True, default=str).encode())
    key = f"{spec.name}@{spec.version}-{digest.hexdigest()[:8]}"
    return LevelPlan(model_name, model, members, key)


def levels_date_rows(opener: CubeOpener, target: Target, forecast_date: pd.Timestamp,
                     plan: LevelPlan, horizons: Iterable[int]) -> tuple[pd.DataFrame, dict]:
    """Raw forecasts of a plan's models at every level of the plan, made on one date.

    A model pooling the hierarchy (``gbm``, ``growth``) is fitted once for all the levels
    (see :func:`raw_forecasts`); the ensemble is combined per level as in :func:`forecast`.

    Returns
    -------
    (rows, meta): wide rows (``model``, ``level``, ``forecast_date``, ``territory``,
    ``horizon``, ``target_end_date``, quantile columns) of every member, the baseline and the
    model; per level ``{"vintage_id", "signal_fallbacks"}`` (levels with no history before the
    date are left out of both).
    """
    fd = pd.Timestamp(forecast_date)
    horizons = tuple(horizons)
    ds = opener(target.frequency, fd)
    cache: dict = {}
    parts, meta = [], {}
    for level, models in plan.members.items():
        try:
            fcs = raw_forecasts(ds, target, level, fd, models, horizons, pooled_cache=cache)
        except NoHistoryError as err:
            log.debug("%s %s %s skipped: %s", target.name, level, fd.date(), err)
            continue
        if isinstance(plan.model, Ensemble):
            fcs[plan.model_name] = combine_members(plan.model, fcs, ds, target.variable)
        fallbacks = {name: dict(f.attrs["signal_fallbacks"]) for name, f in fcs.items()
                     if f.attrs.get("signal_fallbacks")}
        meta[level] = {"vintage_id": str(ds.attrs.get("vintage_id", "")),
                       "signal_fallbacks": fallbacks}
        if short_history(fcs):
            meta[level]["short_history"] = short_history(fcs)
        parts += [forecast_rows(fc, fd).assign(model=name, level=level)
                  for name, fc in fcs.items()]
    if not parts:
        return pd.DataFrame(columns=["model", "level", *_ROW_KEYS]), meta
    return pd.concat(parts, ignore_index=True), meta


_ROW_KEYS = ["forecast_date", "territory", "horizon", "target_end_date", *QCOLS]


@dataclass
class DateTask:
    """One call of :func:`levels_date_rows` (what :func:`run_date_tasks` schedules)."""

    target: Target
    forecast_date: pd.Timestamp
    plan: LevelPlan
    horizons: tuple[int, ...]
    tag: Any = None


def run_date_tasks(tasks: list[DateTask], opener: CubeOpener, *, client: Any = None,
                   on_done: Callable[[DateTask, tuple | None, BaseException | None], None]
                   | None = None) -> list[tuple | None]:
    """Run date tasks, in parallel on the Dask ``client`` when given (both workers busy until
    the last task), calling ``on_done(task, result, error)`` as each one ends (progress,
    storing, publishing what is complete). A failed task gives ``None`` and its error to
    ``on_done``; the others go on.

    Tasks that would fit the same models on the same data to forecast the same periods
    (:func:`same_inputs`: a quarterly target's Mondays of one quarter) are fitted once; each
    gets that result with its own forecast date.
    """
    results: list[tuple | None] = [None] * len(tasks)
    groups = same_inputs(tasks, opener)
    fitted = [tasks[members[0]] for members in groups]

    def _done(k: int, result, error) -> None:
        for n, i in enumerate(groups[k]):
            own = result if error is not None or n == 0 \
                else _redated(result, tasks[i].forecast_date)
            results[i] = own
            if on_done is not None:
                on_done(tasks[i], own, error)

    if client is None:
        with one_thread():
            for k, t in enumerate(fitted):
                try:
                    result = levels_date_rows(opener, t.target, t.forecast_date, t.plan,
                                              t.horizons)
                except Exception as exc:  # one failing date must not stop the others
                    _done(k, None, exc)
                    continue
                _done(k, result, None)
        return results
    # The workers are sent each date's cube, not the opener (no path to Vigie's home).
    calls = [(levels_date_rows, t.target.frequency, t.forecast_date,
              (t.target, t.forecast_date, t.plan, t.horizons)) for t in fitted]
    for k, fut in ShippedCubes(client, opener).run(calls):
        try:
            result = fut.result()
        except Exception as exc:
            _done(k, None, exc)
            continue
        _done(k, result, None)
    return results


def same_inputs(tasks: list[DateTask], opener: CubeOpener) -> list[list[int]]:
    """The tasks grouped (indices, in order of first appearance) by what their fits read and
    forecast: target, model plan and levels, horizons, the cube's vintage and dates as of the
    forecast date, and the periods each horizon forecasts. A fit sees nothing else of its
    forecast date (:func:`levels_date_rows`: the cube cut before it, and the horizons' end
    dates), so the tasks of a group give the same rows but for their ``forecast_date``: the
    Mondays of one quarter for a quarterly target; a weekly or daily target's origins each
    read new dates, one group each."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tasks):
        dates = opener(t.target.frequency, t.forecast_date)
        ds_dates = dates["date"].values
        ds_attrs = dates.attrs
        key = (t.target.name, t.target.frequency, t.target.variable, t.plan.key,
               tuple(t.plan.members), tuple(t.horizons),
               str(ds_attrs.get("vintage_id", "")), len(ds_dates),
               ds_dates[0] if len(ds_dates) else None, ds_dates[-1] if len(ds_dates) else None,
               tuple(t.target.end_date(t.forecast_date, n) for n in t.horizons))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _redated(result: tuple, forecast_date: pd.Timestamp) -> tuple:
    """A :func:`levels_date_rows` result given to another task of its group: the same rows
    and metadata, dated ``forecast_date``."""
    rows, meta = result
    rows = rows.copy()
    rows["forecast_date"] = pd.Timestamp(forecast_date)
    return rows, copy.deepcopy(meta)


def history_dates(target: Target, forecast_date: pd.Timestamp, window: int,
                  horizons: Iterable[int] | None = None) -> list[pd.Timestamp]:
    """Past forecast dates whose errors calibrate a forecast made on ``forecast_date``:
    Mondays, a week apart (also for daily targets), far enough back that ``window`` of them
    have every horizon observed before it. For a weekly target (forecast on a Monday) these
    are the dates :func:`forecast` backtests; a daily target's are the Mondays before its date,
    the origins of the stored backtests, so calibration reuses them."""
    fd = pd.Timestamp(forecast_date).normalize()
    monday = fd + pd.Timedelta(days=(0 - fd.weekday()) % 7)
    return [d for d in warmup_dates(target, monday, window, 7, horizons) if d < fd]


def calibrate_level(fc_rows: pd.DataFrame, history: pd.DataFrame, ds_as_of: xr.Dataset,
                    target: Target, forecast_date: pd.Timestamp,
                    calibration: ConformalCalibrator) -> tuple[xr.DataArray, dict]:
    """The calibrated forecast of one model and level from its raw rows and the raw rows of
    its past forecasts (outcomes as known in ``ds_as_of``), as :func:`forecast` does it.

    Returns
    -------
    (forecast with Hub horizons, ``{"calibration_factors": …}``).
    """
    fd = pd.Timestamp(forecast_date)
    fc = rows_to_forecast(fc_rows.drop(columns=["level"], errors="ignore"))
    known = observed_rows(history, ds_as_of, target)
    cal = ConformalCalibrator(calibration.window, calibration.prior_scores,
                              calibration.max_factor).fit(known, as_of=fd)
    fc = cal.transform(fc)
    factors = {int(h): [round(float(k), 3) for k in cal.factors(int(h))]
               for h in fc["horizon"].values}
    return fc, {"calibration_factors": factors}
