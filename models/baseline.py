"""The Forecast Hubs' naive baseline: flat median, spread from symmetrised past changes.

The quantile function itself, :func:`models.base.hub_baseline_quantiles`, lives beside the
interface: every per-series model falls back to it (re-exported here).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.base import SeriesForecaster, hub_baseline_quantiles

__all__ = ["Baseline", "hub_baseline_quantiles"]


class Baseline(SeriesForecaster):
    """Hub baseline (``baseline``): last value, symmetrised past changes, floored at 0.

    Parameters
    ----------
    min_history:
        Observed periods needed (a series never observed is forecast as zeros).
    window:
        Number of most recent changes to sample from (None = all history).
    """

    alias: ClassVar[str] = "baseline"

    def __init__(self, *, min_history: int = 1, window: int | None = None) -> None:
        self.min_history = min_history
        self.window = window

    def _fit_one(self, y: np.ndarray, dates: pd.DatetimeIndex, x: np.ndarray | None) -> Any:
        return y

    def _predict_one(self, state: Any, steps: int, x_future: np.ndarray | None) -> np.ndarray:
        return hub_baseline_quantiles(state, steps, window=self.window)
