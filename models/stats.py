"""statsmodels adapters: ETS and SARIMAX on a variance-stabilising scale.

Counts are modelled on ``log1p`` (growth is multiplicative in an epidemic) and the Gaussian
predictive distribution is mapped back, which keeps every quantile non-negative and skews the
intervals upward as they should be.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from models.base import TRANSFORMS, SeriesForecaster, normal_quantiles, season_length


@dataclass
class _Fitted:
    result: Any
    n_obs: int
    x_last: np.ndarray | None = None


class ETS(SeriesForecaster):
    """Exponential smoothing (statsmodels ``ETSModel``), additive damped trend by default.

    Parameters
    ----------
    transform:
        ``log1p`` or ``sqrt``.
    trend:
        ``"add"`` or None.
    damped:
        Damp the trend, which keeps 4-week extrapolations of an epidemic wave sane.
    window:
        Fit on the last ``window`` periods only (None = all); the dynamics of a pandemic
        change, and shorter fits are faster.
    min_history:
        Observed periods needed (fewer: the Hub baseline, logged in ``fallbacks_``).
    """

    alias: ClassVar[str] = "ets"

    def __init__(self, *, min_history: int = 10, transform: str = "log1p",
                 trend: str | None = "add", damped: bool = True, window: int | None = 52) -> None:
        self.min_history = min_history
        self.transform = transform
        self.trend = trend
        self.damped = damped
        self.window = window

    def _fit_one(self, y: np.ndarray, dates: pd.DatetimeIndex, x: np.ndarray | None) -> Any:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        window = self.window
        z = TRANSFORMS[self.transform][0](y[-window:] if window else y)
        period = season_length(self.step_)
        seasonal = "add" if period > 1 and z.size >= 3 * period else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter: the fallback handles failures
            result = ETSModel(
                pd.Series(z),
                error="add",
                trend=self.trend,
                damped_trend=bool(self.damped and self.trend),
                seasonal=seasonal,
                seasonal_periods=period if seasonal else None,
            ).fit(disp=False, maxiter=200)
        return _Fitted(result, z.size)

    def _predict_one(self, state: Any, steps: int, x_future: np.ndarray | None) -> np.ndarray:
        pred = state.result.get_prediction(start=state.n_obs, end=state.n_obs + steps - 1)
        mean = np.asarray(pred.predicted_mean, dtype=float)
        sd = np.sqrt(np.asarray(pred.var_pred_mean, dtype=float))
        return normal_quantiles(mean, sd, self.transform)


class SARIMAX(SeriesForecaster):
    """Seasonal ARIMA with optional exogenous regressors (statsmodels ``SARIMAX``).

    Parameters
    ----------
    order:
        (p, d, q) on the transformed scale; (1, 1, 1) is a damped local-growth model.
    seasonal_order:
        Used for daily series (weekday reporting effect): (P, D, Q) with period 7.
    exog:
        Names of variables of ``X`` used as regressors (e.g. ``stringency_index``,
        ``mobility_workplaces``). Their future is held at the last observed value (the
        planning assumption "measures stay as they are"). Missing regressors are ignored.
    exog_lag:
        Lag (periods) between a regressor and the target: admissions follow contacts.
    window:
        Fit on the last ``window`` periods only (None = all).
    transform:
        ``log1p`` or ``sqrt``.
    min_history:
        Observed periods needed (fewer: the Hub baseline, logged in ``fallbacks_``).
    """

    alias: ClassVar[str] = "sarimax"

    def __init__(self, *, min_history: int = 12, transform: str = "log1p",
                 order: tuple[int, int, int] = (1, 1, 1),
                 seasonal_order: tuple[int, int, int] = (1, 0, 1),
                 exog: tuple[str, ...] = (), exog_lag: int = 2,
                 window: int | None = 52) -> None:
        self.min_history = min_history
        self.transform = transform
        self.order = order
        self.seasonal_order = seasonal_order
        self.exog = exog
        self.exog_lag = exog_lag
        self.window = window

    def _exog(self, X: xr.Dataset | None, territory: str) -> np.ndarray | None:
        names = [n for n in self.exog if X is not None and n in X]
        if not names:
            return None
        cols = []
        for name in names:
            da = X[name]
            series = da.sel(territory=territory) if "territory" in da.dims else da
            v = pd.Series(np.asarray(series.values, dtype=float))
            # Lag so that the regressor known at t explains the target at t + lag; then carry
            # the last observed value forward (mobility ends earlier than hospital data).
            cols.append(v.shift(self.exog_lag).ffill().bfill().fillna(0.0).to_numpy())
        return np.column_stack(cols)

    def _fit_one(self, y: np.ndarray, dates: pd.DatetimeIndex, x: np.ndarray | None) -> Any:
        from statsmodels.tsa.statespace.sarimax import SARIMAX as _SARIMAX

        window = self.window
        if window:
            y = y[-window:]
            x = None if x is None else x[-window:]
        z = TRANSFORMS[self.transform][0](y)
        period = season_length(self.step_)
        seasonal = (*self.seasonal_order, period) if period > 1 else (0, 0, 0, 0)
        if x is not None:
            x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Concentrating the scale out of the likelihood makes fits ~4x faster, same optimum.
            result = _SARIMAX(
                z, exog=x, order=tuple(self.order), seasonal_order=seasonal,
                concentrate_scale=True,
            ).fit(disp=False, maxiter=100)
        return _Fitted(result, z.size, None if x is None else x[-1])

    def _predict_one(self, state: Any, steps: int, x_future: np.ndarray | None) -> np.ndarray:
        exog = None if state.x_last is None else np.tile(state.x_last, (steps, 1))
        fc = state.result.get_forecast(steps, exog=exog)
        mean = np.asarray(fc.predicted_mean, dtype=float)
        sd = np.sqrt(np.asarray(fc.var_pred_mean, dtype=float))
        return normal_quantiles(mean, sd, self.transform)
