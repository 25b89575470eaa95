"""One forecast's inputs: the cube cut as of the forecast date, the target history and
regressors of a level, the models to fit, and their raw (uncalibrated) forecasts.

Data flows one way: the cube (``features.store.open_cube``, or any callable with the same
signature in tests) is read ``as_of`` each forecast date, so a forecast never sees data dated
on or after its forecast date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from models.base import Forecaster, infer_step, quantile_array
from models.calibration import QCOLS
from models.ensemble import Ensemble
from models.parallel import run_models
from models.registry import Registry
from models.targets import LEVELS, Target, select_territories

log = logging.getLogger(__name__)

CubeOpener = Callable[[str, Any], xr.Dataset]


class NoHistoryError(ValueError):
    """Nothing to forecast from: the target has no data before the forecast date."""


def default_opener(settings: Any = None) -> CubeOpener:
    """``open_cube`` bound to settings (the only way models read data)."""
    from features.store import open_cube

    return lambda frequency, as_of: open_cube(frequency, as_of=as_of, settings=settings)


def prepare(
    ds: xr.Dataset, target: Target, level: str, territories: list[str] | None = None
) -> tuple[xr.DataArray, xr.Dataset]:
    """Target history ``y`` (territory, date) and regressors ``X`` for a level."""
    codes = select_territories(ds, level, territories,
                               kinds=target.pool if level == "all" else None)
    if target.derived and level != "all":
        # A derived target (a city's indicator, say) exists only where it is sent: a territory
        # of the level that never reported it gets no forecast (it would be a forecast of 0).
        reported = ds[target.variable].sel(territory=codes).notnull().any("date").values
        codes = [code for code, seen in zip(codes, reported, strict=True) if seen]
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
    periods = int(y.notnull().any("territory").sum())
    if periods < target.min_periods:
        return _short_history(y, X, target, level, forecast_date, models, steps, periods,
                              client)
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


def _short_history(y: xr.DataArray, X: xr.Dataset, target: Target, level: str,
                   forecast_date: pd.Timestamp, models: dict[str, Forecaster],
                   steps: dict[int, int], periods: int, client: Any) -> dict[str, xr.DataArray]:
    """Every model replaced by the Hub baseline: too few observed periods for the fitted
    models (a city's first months). Logged, and said in the forecasts' ``short_history``
    attribute, which the run's metadata records."""
    from models.baseline import Baseline

    log.warning("%s (%s) at level %s as of %s: %d observed periods, fewer than %d: every "
                "model falls back to the baseline", target.name, target.frequency, level,
                pd.Timestamp(forecast_date).date(), periods, target.min_periods)
    baseline = models.get("baseline") or Baseline()
    fc = run_models({"baseline": baseline}, y, X, max(steps.values()), client,
                    set(steps.values()))["baseline"]
    fc = relabel(fc, steps)
    fc.attrs["short_history"] = {"periods": periods, "needed": target.min_periods,
                                 "models": "baseline"}
    return {name: fc.copy() for name in models}


def short_history(forecasts: dict[str, xr.DataArray]) -> dict | None:
    """The ``short_history`` record of forecasts made by :func:`raw_forecasts`, if any."""
    return next((dict(f.attrs["short_history"]) for f in forecasts.values()
                 if f.attrs.get("short_history")), None)


def observed_rows(rows: pd.DataFrame, ds: xr.Dataset, target: Target) -> pd.DataFrame:
    """Add the ``observed`` outcome (as known in ``ds``) to forecast rows."""
    da = ds[target.variable]
    known = da.to_series().rename("observed").reset_index()
    known = known.rename(columns={"date": "target_end_date"})
    known["territory"] = known["territory"].astype(str)
    rows = rows.drop(columns=["observed"], errors="ignore")
    return rows.merge(known, on=["territory", "target_end_date"], how="left")


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


def rows_to_forecast(rows: pd.DataFrame) -> xr.DataArray:
    """Wide rows of one model and forecast date back to a (territory, horizon, quantile) array
    (territories in the order of their first row: the cube's, for rows of forecast_rows)."""
    territories = list(dict.fromkeys(rows["territory"]))
    position = rows["territory"].map({t: i for i, t in enumerate(territories)})
    rows = rows.assign(_position=position).sort_values(["_position", "horizon"], kind="stable")
    horizons = list(dict.fromkeys(rows["horizon"]))
    values = rows[QCOLS].to_numpy(float).reshape(len(territories), len(horizons), len(QCOLS))
    ends = pd.DatetimeIndex(rows["target_end_date"].iloc[: len(horizons)])
    fc = quantile_array(values, territories, ends, model=str(rows["model"].iloc[0]))
    return fc.assign_coords(horizon=horizons)
