"""Rolling-origin backtests: forecasts of past dates, each from the cube as known that day,
raw and calibrated with the errors of earlier forecasts whose targets were observed before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import pandas as pd

from models.base import Forecaster
from models.calibration import ConformalCalibrator, calibrate_rows, forecast_rows
from models.ensemble import Ensemble
from models.parallel import ShippedCubes, _progress, _progress_gather, one_thread
from models.preparation import (
    CubeOpener,
    NoHistoryError,
    combine_members,
    expand_members,
    observed_rows,
    raw_forecasts,
    rows_to_forecast,
)
from models.registry import Registry, get_registry
from models.targets import LEVELS, Target

log = logging.getLogger(__name__)


def monday_dates(start: str | pd.Timestamp, end: str | pd.Timestamp, every: int = 7) -> list:
    """Forecast dates: the first Monday on or after ``start``, then every ``every`` days."""
    first = pd.Timestamp(start).normalize()
    first += pd.Timedelta(days=(0 - first.weekday()) % 7)
    return list(pd.date_range(first, pd.Timestamp(end), freq=f"{every}D"))


def _backtest_date(opener, target, level, fd, models, horizons, territories, ensembles=None):
    ds = opener(target.frequency, fd)
    t0 = time.perf_counter()
    try:
        fcs = raw_forecasts(ds, target, level, fd, models, horizons, territories)
    except NoHistoryError as err:
        # A warm-up date before the series began: nothing to learn calibration from.
        log.warning("backtest %s skipped: %s", fd.date(), err)
        return pd.DataFrame()
    for name, ens in (ensembles or {}).items():
        fcs = {**fcs, name: combine_members(ens, fcs, ds, target.variable)}
    rows = [forecast_rows(fc, fd).assign(model=name) for name, fc in fcs.items()]
    log.debug("backtest %s: %.1fs", fd.date(), time.perf_counter() - t0)
    return pd.concat(rows, ignore_index=True)


def backtest_raw(
    target: Target,
    level: str,
    forecast_dates: list[pd.Timestamp],
    model_names: list[str],
    opener: CubeOpener,
    *,
    territories: list[str] | None = None,
    horizons: Iterable[int] | None = None,
    client: Any = None,
    registry: Registry | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Uncalibrated forecasts of the models (and ensemble members) at each forecast date.

    Every forecast date reads the cube ``as_of`` that date. Forecast dates run in parallel on
    the Dask ``client`` when one is given.

    Returns
    -------
    Wide table: ``model``, ``forecast_date``, ``territory``, ``horizon``, ``target_end_date``
    and the quantile columns ``q0.01`` … ``q0.99``.
    """
    registry = registry or get_registry()
    horizons = tuple(horizons or target.horizons)
    fitted: dict[str, Forecaster] = {}
    ensembles: dict[str, Ensemble] = {}
    for name in model_names:
        model, members = expand_members(name, registry, level)
        fitted.update(members)
        if isinstance(model, Ensemble):
            ensembles[name] = model
    tasks = [(target, level, pd.Timestamp(fd), fitted, horizons, territories, ensembles)
             for fd in forecast_dates]
    if client is not None:
        # The workers are sent each date's cube, not the opener (no path to Vigie's home).
        calls = [(_backtest_date, target.frequency, t[2], t) for t in tasks]
        parts = _progress_gather(ShippedCubes(client, opener).run(calls), len(calls), progress)
    else:
        with one_thread():
            parts = [_backtest_date(opener, *t) for t in _progress(tasks, progress, "backtest")]
    return pd.concat(parts, ignore_index=True)


def backtest_levels(
    target: Target,
    levels: Iterable[str],
    forecast_dates: list[pd.Timestamp],
    model_names: list[str],
    opener: CubeOpener,
    *,
    horizons: Iterable[int] | None = None,
    client: Any = None,
    registry: Registry | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Uncalibrated forecasts of models (e.g. two ensemble versions) at several levels, each
    member fitted once per date.

    The rows equal those of :func:`backtest_raw` run level by level, at a fraction of the
    cost: a pooled member (``gbm``) is fitted on the whole hierarchy whatever the level, so it
    is fitted once per date for every level; per-series members only at the levels that
    combine them (``ets`` and ``sarimax`` for France). Ensembles are then combined per date
    by :func:`combine_members`, as in a live forecast.

    Returns
    -------
    Wide table as :func:`backtest_raw` (territories of every level in ``levels``) with the
    models, their members (keys as :meth:`Ensemble.member_keys`) and ``baseline``.
    """
    registry = registry or get_registry()
    levels = list(levels)
    horizons = tuple(horizons or target.horizons)
    pooled, series = {"baseline"}, {level: set() for level in levels}
    ensembles: dict[str, Ensemble] = {}
    for name in model_names:
        model, _ = expand_members(name, registry)
        if isinstance(model, Ensemble):
            ensembles[name] = model
        for level in levels:
            members = (model.member_models(registry, LEVELS[level])
                       if isinstance(model, Ensemble) else {name: model})
            for key, member in members.items():
                (pooled if member.pools_territories else series[level]).add(key)
    kwargs = {"horizons": horizons, "client": client, "registry": registry,
              "progress": progress}
    parts = [backtest_raw(target, "all", forecast_dates, sorted(pooled), opener, **kwargs)]
    for level in levels:
        if series[level] - pooled:
            parts.append(backtest_raw(target, level, forecast_dates,
                                      sorted(series[level] - pooled), opener, **kwargs))
    ds = opener(target.frequency, None)
    level_of = dict(zip(ds["territory"].values.astype(str),
                        ds["territory_level"].values.astype(str), strict=True))
    wanted = {kind for level in levels for kind in LEVELS[level]}
    raw = pd.concat(parts, ignore_index=True)
    raw = raw[raw["territory"].map(level_of).isin(wanted)]
    combined = [raw]
    for (fd, _level), rows in raw.groupby(["forecast_date", raw["territory"].map(level_of)]):
        by_model = {m: rows_to_forecast(r) for m, r in rows.groupby("model")}
        # Members are combined position by position: one territory order for all of them.
        order = sorted(next(iter(by_model.values()))["territory"].values)
        by_model = {m: fc.sel(territory=order) for m, fc in by_model.items()}
        for name, ens in ensembles.items():
            fc = combine_members(ens, by_model, ds, target.variable)
            combined.append(forecast_rows(fc, fd).assign(model=name))
    return pd.concat(combined, ignore_index=True)


def backtest(
    target: Target,
    level: str,
    forecast_dates: list[pd.Timestamp],
    model_names: list[str],
    opener: CubeOpener,
    *,
    territories: list[str] | None = None,
    horizons: Iterable[int] | None = None,
    calibration: ConformalCalibrator | None = None,
    warmup: int | None = None,
    every: int = 7,
    client: Any = None,
    registry: Registry | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Rolling-origin backtest of models (and ``baseline``), raw and calibrated.

    ``warmup`` extra forecast dates before the first one (default: calibration window +
    longest horizon) give the calibration errors to learn from; they are not returned. The
    forecasts of date ``d`` are calibrated with errors of earlier forecasts whose targets are
    dated before ``d``, with outcomes as known on ``d``.

    Returns
    -------
    Wide table as :func:`backtest_raw`, each model twice: ``<name>_raw`` and calibrated
    ``<name>`` (``baseline`` only raw, as the Hubs define it), plus ``observed`` (the outcome
    in the latest cube, for scoring).

    Raises
    ------
    NoHistoryError
        No forecast date (nor warm-up date) has data before it.
    """
    horizons = tuple(horizons or target.horizons)
    calibration = calibration or ConformalCalibrator.for_frequency(target.frequency)
    if warmup is None:
        warmup = calibration.window + max(horizons)
    first = pd.Timestamp(forecast_dates[0])
    warm = [first - pd.Timedelta(days=every * k) for k in range(warmup, 0, -1)]
    names = list(dict.fromkeys([*model_names, "baseline"]))
    raw = backtest_raw(
        target, level, [*warm, *map(pd.Timestamp, forecast_dates)], names, opener,
        territories=territories, horizons=horizons, client=client, registry=registry,
        progress=progress,
    )
    if raw.empty:  # every date skipped (logged): nothing observed before any of them
        raise NoHistoryError(f"no {target.variable} ({target.frequency}) data at level {level} "
                             f"before any forecast date from {first.date()} to "
                             f"{pd.Timestamp(forecast_dates[-1]).date()}")
    raw = raw[raw["model"].isin(names)]
    return calibrate_backtest(raw, target, first, opener, calibration)


def calibrate_backtest(
    raw: pd.DataFrame,
    target: Target,
    first: pd.Timestamp,
    opener: CubeOpener,
    calibration: ConformalCalibrator | None = None,
) -> pd.DataFrame:
    """Calibrate raw backtest rows date by date (see :func:`backtest`); keep dates >= first."""
    calibration = calibration or ConformalCalibrator.for_frequency(target.frequency)
    # The baseline is the Hubs' reference as defined: it is kept raw, never calibrated.
    is_base = raw["model"] == "baseline"
    out = [raw[is_base], raw[~is_base].assign(model=raw["model"] + "_raw")]
    to_calibrate = raw[~is_base]
    for fd, current in to_calibrate.groupby("forecast_date", sort=True):
        if fd < first:
            continue
        past = to_calibrate[to_calibrate["forecast_date"] < fd]
        known = observed_rows(past, opener(target.frequency, fd), target)
        for name, rows in current.groupby("model", sort=False):
            out.append(calibrate_rows(rows, known[known["model"] == name], fd, calibration))
    result = pd.concat(out, ignore_index=True)
    result = result[result["forecast_date"] >= first]
    return observed_rows(result, opener(target.frequency, None), target)
