"""Prophet adapter: piecewise-linear trend on log1p counts, French public holidays, regressors.

Prophet's own forecaster validates and loads Stan in its constructor and refuses a second fit,
so it is wrapped: a fresh ``Prophet`` is built inside every per-series fit. Its sampled
uncertainty (1,000 trend simulations per series) is the slow part and is switched off; the
spread comes from the in-sample residuals, growing like sqrt(h), and is then corrected by the
conformal calibration layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.base import TRANSFORMS, SeriesForecaster, future_dates, normal_quantiles


def _silence_stan() -> None:
    # cmdstanpy logs two INFO lines per fit; a backtest makes thousands of fits. Its logger
    # installs its own DEBUG-level handler when it has none, so give it one first.
    for name in ("cmdstanpy", "prophet"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.WARNING)


@cache
def french_holidays(first_year: int, last_year: int) -> pd.DataFrame:
    """French public holidays (metropolitan calendar) as a Prophet ``holidays`` frame."""
    import holidays

    days = holidays.France(years=range(first_year, last_year + 1))
    return pd.DataFrame({"ds": pd.to_datetime(list(days.keys())), "holiday": "jour_ferie"})


@dataclass
class _Fitted:
    model: Any
    sd: float
    last_date: pd.Timestamp


class ProphetForecaster(SeriesForecaster):
    """Prophet on the log1p scale (``prophet``).

    Parameters
    ----------
    window:
        Fit on the last ``window`` periods: keeps the fit fast and the trend local.
    changepoint_prior_scale:
        Trend flexibility (Prophet's default 0.05).
    n_changepoints:
        Number of potential trend changes in the window.
    holidays:
        Add French public holidays (effective on daily series; weekly dates fall on Saturdays).
    transform:
        ``log1p`` or ``sqrt``.
    min_history:
        Observed periods needed (fewer: the Hub baseline, logged in ``fallbacks_``).
    """

    alias: ClassVar[str] = "prophet"

    def __init__(self, *, min_history: int = 12, window: int = 30,
                 changepoint_prior_scale: float = 0.05, n_changepoints: int = 8,
                 holidays: bool = True, transform: str = "log1p") -> None:
        self.min_history = min_history
        self.window = window
        self.changepoint_prior_scale = changepoint_prior_scale
        self.n_changepoints = n_changepoints
        self.holidays = holidays
        self.transform = transform

    def _fit_one(self, y: np.ndarray, dates: pd.DatetimeIndex, x: np.ndarray | None) -> Any:
        from prophet import Prophet

        _silence_stan()
        window = self.window
        y, dates = y[-window:], dates[-window:]
        daily = isinstance(self.step_, pd.offsets.Day)
        hol = (
            french_holidays(dates[0].year, dates[-1].year + 1)
            if self.holidays and daily
            else None
        )
        model = Prophet(
            growth="linear",
            yearly_seasonality=False,
            weekly_seasonality=daily,
            daily_seasonality=False,
            holidays=hol,
            n_changepoints=min(self.n_changepoints, max(1, y.size // 3)),
            changepoint_range=0.9,
            changepoint_prior_scale=self.changepoint_prior_scale,
            uncertainty_samples=0,
        )
        frame = pd.DataFrame({"ds": dates, "y": TRANSFORMS[self.transform][0](y)})
        model.fit(frame, algorithm="LBFGS")
        fitted = model.predict(frame[["ds"]])["yhat"].to_numpy()
        resid = frame["y"].to_numpy() - fitted
        # Residuals about a smooth trend understate one-step errors; take the one-step change
        # of residuals as a floor so a perfectly smooth history does not give zero width.
        sd = float(max(np.std(resid, ddof=1), np.std(np.diff(resid), ddof=1) / np.sqrt(2), 1e-3))
        return _Fitted(model, sd, dates[-1])

    def _predict_one(self, state: Any, steps: int, x_future: np.ndarray | None) -> np.ndarray:
        ds = future_dates(state.last_date, self.step_, steps)
        mean = state.model.predict(pd.DataFrame({"ds": ds}))["yhat"].to_numpy()
        sd = state.sd * np.sqrt(np.arange(1, steps + 1))
        return normal_quantiles(mean, sd, self.transform)
