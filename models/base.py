"""The forecaster interface every Vigie model follows, and the helpers they share.

A forecaster is fitted on a history ``y`` with dims ``(territory, date)`` (one value per
territory and period, NaN = not observed) and predicts the 23 Hub quantiles of the next
``horizon`` periods:

>>> model = REGISTRY.create("ets").fit(y)                      # doctest: +SKIP
>>> q = model.predict(4)   # dims (territory, horizon, quantile), coord target_date(horizon)

Horizon ``h`` is the ``h``-th period after the last date of ``y``'s date axis (the same for every
territory, so that a territory whose latest value is missing is still forecast for the same
target dates).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import norm

log = logging.getLogger(__name__)

#: The 23 quantile levels of the US and European Covid-19 Forecast Hubs.
QUANTILES: tuple[float, ...] = (
    0.01, 0.025, *(round(0.05 * k, 3) for k in range(1, 20)), 0.975, 0.99
)
QUANTILES_ARR = np.array(QUANTILES)
#: Central prediction interval levels implied by QUANTILES (0 excluded; 0.98 … 0.1).
INTERVAL_LEVELS: tuple[float, ...] = tuple(
    round(1 - 2 * q, 3) for q in QUANTILES if q < 0.5
)


def infer_step(dates: pd.DatetimeIndex) -> pd.DateOffset:
    """Period of a regular date axis (daily, weekly ending Saturday, quarterly, yearly).

    Parameters
    ----------
    dates:
        At least two increasing dates.

    Returns
    -------
    A pandas offset such that ``dates[-1] + k * offset`` is the k-th next period.
    """
    if len(dates) < 2:
        raise ValueError("cannot infer the period of fewer than two dates")
    days = float(np.median(np.diff(dates.values).astype("timedelta64[D]").astype(float)))
    if days <= 1.5:
        return pd.offsets.Day(1)
    if days <= 8:
        return pd.offsets.Week(1)
    if days <= 100:
        return pd.offsets.QuarterEnd(1)
    return pd.offsets.YearEnd(1)


def future_dates(last: pd.Timestamp, step: pd.DateOffset, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` dates following ``last`` on a ``step`` grid."""
    return pd.DatetimeIndex([last + k * step for k in range(1, horizon + 1)])


def season_length(step: pd.DateOffset) -> int:
    """Seasonal period in steps worth modelling: the weekday effect of daily series (7)."""
    return 7 if isinstance(step, pd.offsets.Day) else 1


def clean_history(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Make one territory's history usable by per-series models.

    Negative counts (SPF corrections) are floored at 0, leading missing values dropped, interior
    gaps linearly interpolated and trailing missing values dropped.

    Parameters
    ----------
    values:
        1-D history, NaN = not observed.

    Returns
    -------
    (clean, n_trailing_missing): the cleaned history and how many periods at the end were
    missing, so that the caller forecasts that many extra steps to keep target dates aligned.
    """
    v = np.asarray(values, dtype=float)
    observed = np.flatnonzero(np.isfinite(v))
    if observed.size == 0:
        return np.array([]), len(v)
    first, last = observed[0], observed[-1]
    v = v[first : last + 1]
    gaps = ~np.isfinite(v)
    if gaps.any():
        idx = np.arange(len(v))
        v[gaps] = np.interp(idx[gaps], idx[~gaps], v[~gaps])
    return np.clip(v, 0.0, None), int(len(values) - 1 - last)


def tidy_quantiles(q: np.ndarray) -> np.ndarray:
    """Floor at 0 and sort along the last axis, so quantiles are non-negative and monotone."""
    q = np.where(np.isfinite(q), q, np.nan)
    return np.sort(np.clip(q, 0.0, None), axis=-1)


# Variance-stabilising transforms: counts are modelled on log1p (multiplicative growth) or sqrt.
TRANSFORMS: dict[str, tuple[Any, Any]] = {
    "log1p": (np.log1p, np.expm1),
    "sqrt": (np.sqrt, lambda z: np.square(np.clip(z, 0.0, None))),
    "none": (lambda x: x, lambda z: z),
}


def normal_quantiles(
    center: np.ndarray, sd: np.ndarray, transform: str = "log1p", sd_upper: np.ndarray | None = None
) -> np.ndarray:
    """Hub quantiles of a (two-piece) normal on a transformed scale, back-transformed.

    Parameters
    ----------
    center:
        Median on the transformed scale, shape (steps,).
    sd:
        Standard deviation on the transformed scale (lower side when ``sd_upper`` is given).
    transform:
        Key of :data:`TRANSFORMS`.
    sd_upper:
        Upper-side standard deviation for skewed forecasts; defaults to ``sd``.

    Returns
    -------
    Array (steps, 23) of non-negative, monotone quantiles on the original scale.
    """
    z = norm.ppf(QUANTILES_ARR)
    sd_lo = np.asarray(sd, dtype=float)[:, None]
    sd_hi = sd_lo if sd_upper is None else np.asarray(sd_upper, dtype=float)[:, None]
    scaled = np.where(z < 0, z * sd_lo, z * sd_hi)
    inverse = TRANSFORMS[transform][1]
    return tidy_quantiles(inverse(np.asarray(center, dtype=float)[:, None] + scaled))


def quantile_array(
    values: np.ndarray,
    territories: list[str] | np.ndarray,
    target_dates: pd.DatetimeIndex,
    *,
    model: str,
    attrs: dict | None = None,
) -> xr.DataArray:
    """Wrap a (territory, horizon, quantile) array as Vigie's forecast DataArray."""
    horizon = np.arange(1, len(target_dates) + 1)
    return xr.DataArray(
        tidy_quantiles(np.asarray(values, dtype=float)),
        dims=("territory", "horizon", "quantile"),
        coords={
            "territory": np.asarray(territories, dtype=str),
            "horizon": horizon,
            "quantile": QUANTILES_ARR,
            "target_date": ("horizon", target_dates),
        },
        name="forecast",
        attrs={"model": model, **(attrs or {})},
    )


def hub_baseline_quantiles(
    history: np.ndarray, steps: int, window: int | None = None, n_paths: int = 2000
) -> np.ndarray:
    """Quantiles of the COVIDhub / EuroCOVIDhub baseline for one series.

    The median is the last observed value. Paths add ``h`` changes drawn from the past
    one-period changes and their negatives (a symmetric distribution: no trend), so the spread
    grows with the horizon; values are floored at 0 and the median is pinned to the last value.

    Parameters
    ----------
    history:
        Cleaned history (no NaN), counts per period.
    steps:
        Number of periods to forecast.
    window:
        Use only the last ``window`` changes (None: all of them, as the Hubs do).
    n_paths:
        Bootstrap paths; the seed is fixed so forecasts are reproducible.

    Returns
    -------
    Array (steps, 23).
    """
    if history.size == 0:
        return np.zeros((steps, QUANTILES_ARR.size))
    last = float(history[-1])
    diffs = np.diff(history)
    if window is not None:
        diffs = diffs[-window:]
    if diffs.size == 0:
        return np.full((steps, QUANTILES_ARR.size), last)
    sym = np.concatenate([diffs, -diffs])
    rng = np.random.default_rng(20200317)
    draws = rng.choice(sym, size=(n_paths, steps), replace=True)
    paths = np.clip(last + np.cumsum(draws, axis=1), 0.0, None)
    q = np.quantile(paths, QUANTILES_ARR, axis=0).T
    q[:, QUANTILES_ARR == 0.5] = last
    return tidy_quantiles(q)


class UnknownParameterError(TypeError, ValueError):
    """A setting a forecaster does not have (a ``TypeError`` like Python's for an unexpected
    keyword, and a ``ValueError`` like the registry's other refusals)."""


class Forecaster:
    """Base class: settings in ``__init__``, state in ``fit``, quantiles from ``predict``.

    As in scikit-learn, a subclass's ``__init__`` takes its settings as explicit keyword
    parameters (no ``**kwargs``) and only stores each one under its own name: no validation,
    no I/O, so a forecaster can be created from a registry entry and cloned cheaply.
    :meth:`get_params` reads them back (the parameters of ``__init__``), :meth:`set_params`
    changes them; a setting the class does not have is refused with the valid ones listed
    (:class:`UnknownParameterError`). Fitted state is set by ``fit`` in attributes ending in
    ``_``. Subclasses set ``alias`` (the name used in outputs) and implement ``fit`` and
    ``predict``.
    """

    alias: ClassVar[str] = "forecaster"
    #: True when one fit pools every territory (it cannot be split across Dask workers).
    is_global: ClassVar[bool] = False
    #: True when the model should be trained on every territory of the hierarchy, whatever
    #: the level asked for (global models learn little from one national series).
    pools_territories: ClassVar[bool] = False
    #: True when ``__init__`` takes a ``registry`` that resolves member names (an ensemble):
    #: the registry creating the model passes itself; it is not a setting of a registry entry.
    resolves_members: ClassVar[bool] = False

    @classmethod
    def param_names(cls) -> list[str]:
        """The settings of this class: the keyword parameters of its ``__init__``."""
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    @classmethod
    def check_params(cls, params: Iterable[str], *, exclude: Iterable[str] = ()) -> None:
        """Refuse names that are not settings of this class (or are in ``exclude``), listing
        the valid ones.

        Raises
        ------
        UnknownParameterError
            E.g. ``unknown parameter 'alpah' for DampedGrowth (growth); valid: case_signal,
            case_weight, …``.
        """
        valid = [name for name in cls.param_names() if name not in set(exclude)]
        unknown = [name for name in params if name not in valid]
        if unknown:
            names = ", ".join(repr(n) for n in unknown)
            raise UnknownParameterError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {names} for "
                f"{cls.__name__} ({cls.alias}); valid: {', '.join(sorted(valid))}"
            )

    def get_params(self) -> dict[str, Any]:
        """Settings by name, in the order of ``__init__``'s parameters."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change settings (all checked before any is set); returns ``self``."""
        self.check_params(params)
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def clone(self) -> Self:
        """An unfitted copy with the same settings."""
        return type(self)(**self.get_params())

    def fit(self, y: xr.DataArray, X: xr.Dataset | None = None) -> Self:
        raise NotImplementedError

    def predict(self, horizon: int, X_future: xr.Dataset | None = None) -> xr.DataArray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- helpers shared by subclasses ---------------------------------------------------------
    def _store_axis(self, y: xr.DataArray) -> None:
        dates = pd.DatetimeIndex(y["date"].values)
        self.territories_ = [str(t) for t in y["territory"].values]
        self.last_date_ = dates[-1]
        self.step_ = infer_step(dates)


class SeriesForecaster(Forecaster):
    """A forecaster fitted territory by territory, with a per-series fallback.

    Subclasses implement ``_fit_one`` and ``_predict_one``. When a series is too short (fewer
    than ``min_history`` observed periods), all zeros or fails to fit, the series falls back to
    the Hub baseline; the reason is logged and kept in ``fallbacks_`` (territory → reason).
    """

    def __init__(self, *, min_history: int = 8) -> None:
        self.min_history = min_history

    def _fit_one(self, y: np.ndarray, dates: pd.DatetimeIndex, x: np.ndarray | None) -> Any:
        raise NotImplementedError

    def _predict_one(self, state: Any, steps: int, x_future: np.ndarray | None) -> np.ndarray:
        """Return quantiles of the next ``steps`` periods, shape (steps, 23)."""
        raise NotImplementedError

    def _exog(self, X: xr.Dataset | None, territory: str) -> np.ndarray | None:
        return None

    def fit(self, y: xr.DataArray, X: xr.Dataset | None = None) -> Self:
        self._store_axis(y)
        dates = pd.DatetimeIndex(y["date"].values)
        self.states_: dict[str, tuple[str, Any, int, np.ndarray]] = {}
        self.fallbacks_: dict[str, str] = {}
        # Row by position (territories_ is y's territory axis in order): one array, not an
        # xarray selection per territory (the same values).
        series = np.asarray(y.transpose("territory", "date").values)
        for territory, raw in zip(self.territories_, series, strict=True):
            clean, trailing = clean_history(raw)
            reason = None
            if clean.size < self.min_history:
                reason = f"short history ({clean.size} periods)"
            elif not np.any(clean[-self.min_history :] > 0):
                reason = "only zeros recently"
            if reason is None:
                try:
                    end = len(raw) - trailing
                    x = self._exog(X, territory)
                    x = None if x is None else x[end - clean.size : end]
                    state = self._fit_one(clean, dates[end - clean.size : end], x)
                    self.states_[territory] = ("model", state, trailing, clean)
                    continue
                except Exception as exc:  # a crisis cell needs a forecast, not a traceback
                    reason = f"fit failed: {type(exc).__name__}: {exc}"[:200]
            log.info("%s: %s falls back to baseline (%s)", self.alias, territory, reason)
            self.fallbacks_[territory] = reason
            self.states_[territory] = ("baseline", None, trailing, clean)
        return self

    def predict(self, horizon: int, X_future: xr.Dataset | None = None) -> xr.DataArray:
        out = np.full((len(self.territories_), horizon, len(QUANTILES)), np.nan)
        for i, territory in enumerate(self.territories_):
            kind, state, trailing, clean = self.states_[territory]
            steps = horizon + trailing
            q = None
            if kind == "model":
                try:
                    xf = self._exog(X_future, territory)
                    q = self._predict_one(state, steps, xf)
                    if not np.all(np.isfinite(q)):
                        raise FloatingPointError("non-finite forecast")
                except Exception as exc:
                    reason = f"predict failed: {type(exc).__name__}: {exc}"[:200]
                    log.info("%s: %s falls back to baseline (%s)", self.alias, territory, reason)
                    self.fallbacks_[territory] = reason
                    q = None
            if q is None:
                q = hub_baseline_quantiles(clean, steps)
            out[i] = q[trailing:]
        return quantile_array(
            out,
            self.territories_,
            future_dates(self.last_date_, self.step_, horizon),
            model=self.alias,
        )
