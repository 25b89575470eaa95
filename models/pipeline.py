"""From the cube to calibrated forecasts and backtests.

Data flows one way: the cube (``features.store.open_cube``, or any callable with the same
signature in tests) is read ``as_of`` each forecast date, so a forecast never sees data dated
on or after its forecast date; calibration uses only past forecasts whose targets were observed
before that date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from models.base import Forecaster
from models.calibration import QCOLS, ConformalCalibrator, calibrate_rows, forecast_rows
from models.ensemble import Ensemble
from models.registry import Registry, get_registry
from models.targets import LEVELS, Target, select_territories

log = logging.getLogger(__name__)

CubeOpener = Callable[[str, Any], xr.Dataset]


class NoHistoryError(ValueError):
    """Nothing to forecast from: the target has no data before the forecast date."""


def default_opener(settings: Any = None) -> CubeOpener:
    """``open_cube`` bound to settings (the only way models read data)."""
    from features.store import open_cube

    return lambda frequency, as_of: open_cube(frequency, as_of=as_of, settings=settings)


# -- parallelism ------------------------------------------------------------------------------
@contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None, nice: int = 0):
    """A ``dask.distributed`` client: the cluster at ``address`` or a LocalCluster.

    Workers are processes with one thread each: statsmodels and Stan fits hold the GIL. Their
    logging follows this process's (``VIGIE_LOG_LEVEL``, set by the command line: warnings
    once each unless ``-v``). ``nice``: lower the local workers' CPU priority (a background
    job leaves the serving process its share).
    """
    from dask.distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    import os

    n = n_workers or max(1, min(os.cpu_count() or 1, 8))
    with (
        LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_worker_logging, os.environ.get("VIGIE_LOG_LEVEL", "WARNING"), nice)
        yield client


@contextmanager
def one_thread():
    """Fit in this process with one BLAS/OpenMP thread, as a Dask worker does: scikit-learn's
    gradient boosting on two OpenMP threads of a busy 2-core machine spun 10-40x slower (one
    date of emergency visits: 56 s instead of 6)."""
    # threadpoolctl limits the libraries already loaded: load scikit-learn's OpenMP first.
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield None


def _worker_logging(level: str, nice: int = 0) -> None:
    """In a Dask worker: Vigie's warnings once each (a signal dropped at each of 28 dates is
    one fact), at ``level``; libraries quiet unless it is DEBUG."""
    import logging
    import os
    import re

    class _Once(logging.Filter):
        seen: set = set()

        def filter(self, record):
            # One line per fact, as the command line decides it (service.cli.repeat_key).
            args = tuple(map(str, record.args)) if isinstance(record.args, tuple) else ()
            kept = args[:-1] if len(args) > 1 else tuple(re.sub(r"\d+", "#", a) for a in args)
            key = (record.name, str(record.msg), *kept)
            if record.levelno != logging.WARNING or key not in self.seen:
                self.seen.add(key)
                return True
            return False

    class _Lower(logging.Formatter):
        def format(self, record):
            return f"{record.levelname.lower()}: {super().format(record)}"

    root = logging.getLogger()
    if not any(getattr(h, "_vigie", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
                             if level.upper() == "DEBUG" else _Lower("%(message)s"))
        handler.addFilter(_Once())
        handler._vigie = True
        root.addHandler(handler)
    numeric = getattr(logging, level.upper(), logging.WARNING)
    for name in ("models", "features", "scenarios", "service"):
        logging.getLogger(name).setLevel(numeric)
    if nice:
        os.nice(nice)


def _fit_predict(model: Forecaster, y: xr.DataArray, X: xr.Dataset | None, steps: int,
                 needed: set[int] | None = None):
    fitted = model.clone().fit(y, X)
    if needed and getattr(fitted, "predicts_needed_steps", False):
        return fitted.predict(steps, needed=needed)
    return fitted.predict(steps)


def run_models(
    models: dict[str, Forecaster],
    y: xr.DataArray,
    X: xr.Dataset | None,
    steps: int,
    client: Any = None,
    needed: set[int] | None = None,
) -> dict[str, xr.DataArray]:
    """Fit and predict several models; per-series models are split over Dask workers.

    ``needed``: the steps that will be kept (a model that can skips fitting the others).

    Returns
    -------
    name → forecast (territory, horizon=step, quantile).
    """
    if client is None:
        return {name: _fit_predict(m, y, X, steps, needed) for name, m in models.items()}
    n_chunks = max(1, 2 * len(client.scheduler_info()["workers"]))
    codes = list(y["territory"].values)
    chunks = [c for c in np.array_split(np.array(codes, dtype=object), n_chunks) if len(c)]
    futures = {}
    y_f = client.scatter(y, broadcast=True)
    x_f = client.scatter(X, broadcast=True) if X is not None else None
    for name, model in models.items():
        if model.is_global or len(chunks) == 1:
            futures[name] = [client.submit(_fit_predict, model, y_f, x_f, steps, needed,
                                           pure=False)]
        else:
            futures[name] = [
                client.submit(_fit_chunk, model, y_f, x_f, steps, list(chunk), needed,
                              pure=False)
                for chunk in chunks
            ]
    out = {}
    for name, futs in futures.items():
        parts = client.gather(futs)
        out[name] = parts[0] if len(parts) == 1 else xr.concat(parts, dim="territory")
    return out


def _fit_chunk(model, y, X, steps, codes, needed=None):
    sub_x = X.sel(territory=codes) if X is not None and "territory" in X.dims else X
    return _fit_predict(model, y.sel(territory=codes), sub_x, steps, needed)


# -- one forecast -----------------------------------------------------------------------------
def prepare(
    ds: xr.Dataset, target: Target, level: str, territories: list[str] | None = None
) -> tuple[xr.DataArray, xr.Dataset]:
    """Target history ``y`` (territory, date) and regressors ``X`` for a level."""
    codes = select_territories(ds, level, territories)
    sub = ds.sel(territory=codes)
    y = sub[target.variable]
    # Drop leading dates where nothing at this level was observed (weeks before the series
    # began would look like zeros to a global model) and trailing ones (the cube's date axis
    # may run past this variable's last publication); horizons count from the last data.
    observed = np.flatnonzero(y.notnull().any("territory").values)
    if observed.size:
        y = y.isel(date=slice(observed[0], observed[-1] + 1))
    X = sub.drop_vars([target.variable]).sel(date=y["date"])
    return y, X


def expand_members(
    name: str, registry: Registry, level: str | None = None
) -> tuple[Forecaster, dict[str, Forecaster]]:
    """The model and the models to fit for it (its members for an ensemble).

    With ``level``, only the members the ensemble combines at that level are returned: a
    département forecast does not fit the per-series statsmodels members it would discard.
    """
    model = registry.create(name)
    if isinstance(model, Ensemble):
        model.keys_ = model.member_keys(registry)
        return model, model.member_models(registry, None if level is None else LEVELS[level])
    return model, {name: model}


def model_and_members(name: str, registry: Registry) -> list[str]:
    """``name`` and, for an ensemble, every member (to score each on its own): its registry
    name, or ``name@version`` where the ensemble pins another version than the current one."""
    model = registry.create(name)
    members = list(model.member_keys(registry).values()) if isinstance(model, Ensemble) else []
    return list(dict.fromkeys([name, *members]))


def warmup_dates(target: Target, first: pd.Timestamp, window: int, every: int = 7,
                 horizons: Iterable[int] | None = None) -> list[pd.Timestamp]:
    """Forecast dates ``every`` days apart before ``first``, far enough back that ``window``
    of them have every horizon observed before ``first`` (what its calibration learns from)."""
    first = pd.Timestamp(first)
    last_end = target.end_date(first, max(horizons or target.horizons))
    span = -(-(last_end - first).days // every)
    return [first - pd.Timedelta(days=every * k) for k in range(window + span, 0, -1)]


def steps_for(target: Target, last_date: pd.Timestamp, forecast_date: pd.Timestamp,
              horizons: Iterable[int], step: pd.DateOffset) -> dict[int, int]:
    """Model step (periods after ``last_date``) of each Hub horizon N."""
    out = {}
    for n in horizons:
        end = target.end_date(forecast_date, n)
        k, date = 0, pd.Timestamp(last_date)
        while date < end:
            k, date = k + 1, date + step
        if date != end:
            raise ValueError(f"{target.hub_target(n)} ends {end.date()}, not on the data grid")
        out[n] = k
    return out


def relabel(fc: xr.DataArray, steps: dict[int, int]) -> xr.DataArray:
    """Keep the steps of the Hub horizons and label them N."""
    picked = fc.sel(horizon=list(steps.values()))
    return picked.assign_coords(horizon=list(steps.keys()))


def raw_forecasts(
    ds: xr.Dataset,
    target: Target,
    level: str,
    forecast_date: pd.Timestamp,
    models: dict[str, Forecaster],
    horizons: Iterable[int],
    territories: list[str] | None = None,
    client: Any = None,
    pooled_cache: dict | None = None,
) -> dict[str, xr.DataArray]:
    """Uncalibrated forecasts of each model from a cube already cut at ``forecast_date``.

    ``pooled_cache``: a dict shared by the calls for several levels on one cube and date; a
    model pooling the hierarchy (fitted on every level whatever the requested one) is then
    fitted once for all of them (per last observed date), with identical results.
    """
    from models.base import infer_step

    y, X = prepare(ds, target, level, territories)
    dates = pd.DatetimeIndex(y["date"].values)
    if len(dates) < 2 or not bool(y.notnull().any()):
        # One period is no history either: its step (week, day) cannot even be inferred.
        raise NoHistoryError(
            f"{'a single period of' if len(dates) == 1 else 'no'} {target.variable} "
            f"({target.frequency}) data at level {level} dated before "
            f"{pd.Timestamp(forecast_date).date()}"
        )
    if dates.max() >= pd.Timestamp(forecast_date):
        raise ValueError("the cube holds data on or after the forecast date (not cut as_of)")
    steps = steps_for(target, dates[-1], forecast_date, horizons, infer_step(dates))
    n_steps = max(steps.values())
    needed = set(steps.values())
    pooled = {n: m for n, m in models.items() if m.pools_territories}
    fcs = run_models({n: m for n, m in models.items() if n not in pooled}, y, X, n_steps, client,
                     needed)
    cache = pooled_cache if pooled_cache is not None else {}
    key = (dates[-1], n_steps, tuple(sorted(needed)))
    todo = {n: m for n, m in pooled.items() if (n, *key) not in cache}
    if todo:
        # Global models learn from every territory of the hierarchy (a national series alone
        # is too short to train on), then forecast the requested ones.
        y_all, x_all = prepare(ds, target, "all")
        y_all = y_all.sel(date=y_all["date"] <= dates[-1])
        x_all = x_all.sel(date=y_all["date"])
        for name, fc in run_models(todo, y_all, x_all, n_steps, client, needed).items():
            cache[(name, *key)] = fc
    for name in pooled:
        fcs[name] = cache[(name, *key)].sel(territory=y["territory"].values)
    return {name: relabel(fcs[name], steps) for name in models}


def observed_rows(rows: pd.DataFrame, ds: xr.Dataset, target: Target) -> pd.DataFrame:
    """Add the ``observed`` outcome (as known in ``ds``) to forecast rows."""
    da = ds[target.variable]
    known = da.to_series().rename("observed").reset_index()
    known = known.rename(columns={"date": "target_end_date"})
    known["territory"] = known["territory"].astype(str)
    rows = rows.drop(columns=["observed"], errors="ignore")
    return rows.merge(known, on=["territory", "target_end_date"], how="left")


# -- backtest ---------------------------------------------------------------------------------
def monday_dates(start: str | pd.Timestamp, end: str | pd.Timestamp, every: int = 7) -> list:
    """Forecast dates: the first Monday on or after ``start``, then every ``every`` days."""
    first = pd.Timestamp(start).normalize()
    first += pd.Timedelta(days=(0 - first.weekday()) % 7)
    return list(pd.date_range(first, pd.Timestamp(end), freq=f"{every}D"))


def combine_members(
    ensemble: Ensemble, forecasts: dict[str, xr.DataArray], ds: xr.Dataset,
    variable: str | None = None,
) -> xr.DataArray:
    """The ensemble forecast from its members', each territory combined by its level in ``ds``.

    Live forecasts and backtests both combine here, so a backtest scores what is served.
    """
    keys = getattr(ensemble, "keys_", None) or {}
    members = {m: forecasts[keys.get(m, m)] for m in ensemble.all_members()
               if keys.get(m, m) in forecasts}
    territories = next(iter(members.values()))["territory"].values
    return ensemble.combine(members, ds["territory_level"].sel(territory=territories).values,
                            variable=variable)


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
        futures = [client.submit(_backtest_date, opener, *t, pure=False) for t in tasks]
        parts = _progress_gather(client, futures, progress)
    else:
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
        by_model = {m: _rows_to_forecast(r) for m, r in rows.groupby("model")}
        # Members are combined position by position: one territory order for all of them.
        order = sorted(next(iter(by_model.values()))["territory"].values)
        by_model = {m: fc.sel(territory=order) for m, fc in by_model.items()}
        for name, ens in ensembles.items():
            fc = combine_members(ens, by_model, ds, target.variable)
            combined.append(forecast_rows(fc, fd).assign(model=name))
    return pd.concat(combined, ignore_index=True)


def _rows_to_forecast(rows: pd.DataFrame) -> xr.DataArray:
    """Wide rows of one model and forecast date back to a (territory, horizon, quantile) array
    (territories in the order of their first row: the cube's, for rows of forecast_rows)."""
    from models.base import quantile_array
    from models.calibration import QCOLS

    territories = list(dict.fromkeys(rows["territory"]))
    position = rows["territory"].map({t: i for i, t in enumerate(territories)})
    rows = rows.assign(_position=position).sort_values(["_position", "horizon"], kind="stable")
    horizons = list(dict.fromkeys(rows["horizon"]))
    values = rows[QCOLS].to_numpy(float).reshape(len(territories), len(horizons), len(QCOLS))
    ends = pd.DatetimeIndex(rows["target_end_date"].iloc[: len(horizons)])
    fc = quantile_array(values, territories, ends, model=str(rows["model"].iloc[0]))
    return fc.assign_coords(horizon=horizons)


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


def _progress(items, enabled, desc):
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not enabled, leave=False)


def _progress_gather(client, futures, enabled):
    from dask.distributed import as_completed

    results = {}
    bar = _progress(range(len(futures)), enabled, "backtest")
    index = {f.key: i for i, f in enumerate(futures)}
    for fut in as_completed(futures):
        results[index[fut.key]] = fut.result()
        bar.update(1)
    bar.close()
    return [results[i] for i in range(len(futures))]


# -- live forecast ----------------------------------------------------------------------------
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


# -- every level of a target, many dates at once ----------------------------------------------
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
    import hashlib
    import json

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
    """
    results: list[tuple | None] = [None] * len(tasks)

    def _done(i: int, result, error) -> None:
        results[i] = result
        if on_done is not None:
            on_done(tasks[i], result, error)

    if client is None:
        with one_thread():
            for i, t in enumerate(tasks):
                try:
                    result = levels_date_rows(opener, t.target, t.forecast_date, t.plan,
                                              t.horizons)
                except Exception as exc:  # one failing date must not stop the others
                    _done(i, None, exc)
                    continue
                _done(i, result, None)
        return results
    from dask.distributed import as_completed

    futures = {client.submit(levels_date_rows, opener, t.target, t.forecast_date, t.plan,
                             t.horizons, pure=False): i for i, t in enumerate(tasks)}
    for fut in as_completed(list(futures)):
        i = futures[fut]
        try:
            result = fut.result()
        except Exception as exc:
            _done(i, None, exc)
            continue
        _done(i, result, None)
    return results


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
    fc = _rows_to_forecast(fc_rows.drop(columns=["level"], errors="ignore"))
    known = observed_rows(history, ds_as_of, target)
    cal = ConformalCalibrator(calibration.window, calibration.prior_scores,
                              calibration.max_factor).fit(known, as_of=fd)
    fc = cal.transform(fc)
    factors = {int(h): [round(float(k), 3) for k in cal.factors(int(h))]
               for h in fc["horizon"].values}
    return fc, {"calibration_factors": factors}
