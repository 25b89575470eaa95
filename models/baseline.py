"""The Forecast Hubs' naive baseline: flat median, spread from symmetrised past changes."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.base import QUANTILES_ARR, SeriesForecaster, tidy_quantiles


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


class Baseline(SeriesForecaster):
    """Hub baseline (``baseline``): last value, symmetrised past changes, floored at 0.

    Parameters
    ----------
    window:
        Number of most recent changes to sample from (None = all history).
    """

    alias: ClassVar[str] = "baseline"
    defaults: ClassVar[dict[str, Any]] = {"min_history": 1, "window": None}

    def _fit_one(self, y: np.ndarray, dates: pd.DatetimeIndex, x: np.ndarray | None) -> Any:
        return y

    def _predict_one(self, state: Any, steps: int, x_future: np.ndarray | None) -> np.ndarray:
        return hub_baseline_quantiles(state, steps, window=self.params["window"])
