"""A mechanistic member: damped exponential growth led by the growth of cases (``growth``).

Hospital admissions follow infections by one to two weeks, and positive cases by about one:
the growth of a territory's cases this week is the best single guess of the growth of its
admissions next week. The model projects ``log1p`` of weekly admissions from the last value
with a growth rate that blends

- the admissions' own recent growth, ``(log1p y_t - log1p y_{t-k}) / k``, and
- the growth of the case incidence over the last period (``incidence_rate_7d``: France's own,
  a région's own, a département's région's, read through :func:`models.signals.
  resolve_signals`: a stopped or late series is replaced by its nearest live ancestor's, and
  when no territory has a live one the signal is dropped for the fit, logged and recorded, and
  the growth is the admissions' alone),

damped toward zero growth by a factor ``phi`` per period (epidemics turn; a constant growth
over four weeks overshoots every peak):

    log1p y_{t+h} = log1p y_t + g * (1 + phi + ... + phi^(h-1)).

Quantiles: a normal on the log1p scale whose spread per horizon comes from the model's own
errors over the last ``error_window`` origins (the same rule replayed on the past), per
territory, shrunk toward the pooled spread of its level (few points per territory). The
pipeline's conformal calibration then corrects the combined intervals.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import xarray as xr

from models.base import (
    Forecaster,
    future_dates,
    hub_baseline_quantiles,
    normal_quantiles,
    quantile_array,
    season_length,
)
from models.signals import resolve_signals

log = logging.getLogger(__name__)


def damped_sum(phi: float, horizon: int) -> np.ndarray:
    """``1 + phi + ... + phi^(h-1)`` for h = 1..horizon."""
    return np.cumsum(phi ** np.arange(horizon))


class DampedGrowth(Forecaster):
    """Damped growth of log admissions, led by case growth (``growth``).

    Parameters
    ----------
    phi:
        Damping of the growth per period (0: flat after one period; 1: constant growth).
    case_weight:
        Weight of the case growth in the blend (the rest: the admissions' own growth); where
        the case signal is dropped the admissions' growth is used alone.
    case_signal:
        Cube variable whose period-on-period log change is the case growth.
    own_span:
        Periods over which the admissions' own growth is measured (a mean slope).
    max_growth:
        Bound on the blended growth per period on the log scale (0.7: x2 a week).
    error_window:
        Past origins whose errors give each horizon's spread.
    shrink:
        Weight, in origins, of the level's pooled spread against a territory's own.
    min_history:
        Observed periods needed (fewer: the Hub baseline, logged in ``fallbacks_``).
    led_targets:
        Target variables the case growth leads (others, e.g. unemployment, use their own
        growth only).
    signal_max_age_days, signal_min_history_days:
        As ``gbm``'s: how late the case signal may be and how much of it is needed.

    Daily series are handled on their 7-day mean: growth per day over ``own_span`` weeks,
    ``phi`` and ``max_growth`` per week.
    """

    alias: ClassVar[str] = "growth"
    is_global: ClassVar[bool] = True  # a département reads its région's cases
    pools_territories: ClassVar[bool] = True

    def __init__(self, *, phi: float = 0.65, case_weight: float = 0.5,
                 case_signal: str = "incidence_rate_7d", own_span: int = 2,
                 max_growth: float = 0.7, error_window: int = 26, shrink: float = 10.0,
                 min_history: int = 8,
                 led_targets: tuple[str, ...] = ("inc_hosp", "inc_icu", "hosp", "icu",
                                                 "inc_death"),
                 signal_max_age_days: int = 7, signal_min_history_days: int = 56) -> None:
        self.phi = phi
        self.case_weight = case_weight
        self.case_signal = case_signal
        self.own_span = own_span
        self.max_growth = max_growth
        self.error_window = error_window
        self.shrink = shrink
        self.min_history = min_history
        self.led_targets = led_targets
        self.signal_max_age_days = signal_max_age_days
        self.signal_min_history_days = signal_min_history_days

    def _case_growth(self, y: xr.DataArray, X: xr.Dataset | None,
                     period: int = 1) -> np.ndarray | None:
        """Log change of the case signal per period, over ``period`` periods (territory,
        date), or None when the signal is dropped."""
        days = {pd.offsets.Day: 1, pd.offsets.Week: 7}.get(type(self.step_), 91)
        name = self.case_signal
        resolved = resolve_signals(
            (name,), X, y,
            max_age=-(-self.signal_max_age_days // days),
            min_history=-(-self.signal_min_history_days // days),
            model=self.alias,
        )
        self.signal_fallbacks_ = dict(resolved.fallbacks)
        if name not in resolved.values:
            log.warning("growth: no case signal, admissions' own growth only (%s)",
                        resolved.fallbacks.get(name, ""))
            return None
        v = np.log(np.clip(resolved.values[name], 0.0, None) + 1.0)
        g = np.full_like(v, np.nan)
        g[:, period:] = (v[:, period:] - v[:, :-period]) / period
        return g

    def fit(self, y: xr.DataArray, X: xr.Dataset | None = None) -> Self:
        self._store_axis(y)
        self.y_ = y
        values = np.clip(np.asarray(y.values, dtype=float), 0.0, None)
        frame = pd.DataFrame(values.T)
        # Daily series: levels and growth on the 7-day mean (weekday reporting effect), the
        # damping and bounds given per week spread over its days.
        period = season_length(self.step_)
        if period > 1:
            frame = frame.rolling(period, min_periods=period).mean()
        levels = np.log1p(frame.ffill().to_numpy().T)
        k = self.own_span * period
        own = np.full_like(levels, np.nan)
        own[:, k:] = (levels[:, k:] - levels[:, :-k]) / k
        self.signal_fallbacks_: dict[str, str] = {}
        cases = None
        if str(y.name) in self.led_targets:
            cases = self._case_growth(y, X, period)
        else:  # unemployment does not follow infections: a damped trend of its own
            log.info("growth: %s is not led by cases, its own growth only", y.name)
        w = self.case_weight
        growth = own if cases is None else np.where(
            np.isfinite(cases), w * cases + (1 - w) * own, own)
        bound = self.max_growth / period
        self.phi_ = self.phi ** (1.0 / period)
        self.levels_ = levels
        self.raw_ = np.log1p(values)
        self.growth_ = np.clip(growth, -bound, bound)
        self.observed_ = np.isfinite(values)
        return self

    def _spread(self, horizon: int) -> np.ndarray:
        """Standard deviation of past log errors (territory, horizon), shrunk to the level's."""
        levels, growth = self.levels_, self.growth_
        n_t, n_d = levels.shape
        raw = np.where(self.observed_, self.raw_, np.nan)
        cum = damped_sum(self.phi_, horizon)
        sd = np.full((n_t, horizon), np.nan)
        tier = (np.asarray(self.y_["territory_level"].values, dtype=str)
                if "territory_level" in self.y_.coords else np.full(n_t, ""))
        for h in range(1, horizon + 1):
            origins = np.arange(max(0, n_d - h - self.error_window), n_d - h)
            if origins.size == 0:
                continue
            err = raw[:, origins + h] - (levels[:, origins] + growth[:, origins] * cum[h - 1])
            ok = np.isfinite(err)
            n = ok.sum(axis=1)
            own = np.sqrt(np.square(np.where(ok, err, 0.0)).sum(axis=1) / np.maximum(n, 1))
            for level in np.unique(tier):
                rows = tier == level
                pooled = np.nanmedian(own[rows & (n >= 4)]) if np.any(rows & (n >= 4)) else np.nan
                if not np.isfinite(pooled):
                    pooled = 0.1 * h
                mix = np.where(n > 0, (n * own ** 2
                                       + self.shrink * pooled ** 2)
                               / (n + self.shrink), pooled ** 2)
                sd[rows, h - 1] = np.sqrt(mix[rows])
        return np.maximum(sd, 1e-3)

    def predict(self, horizon: int, X_future: xr.Dataset | None = None) -> xr.DataArray:
        targets = future_dates(self.last_date_, self.step_, horizon)
        n_t = len(self.territories_)
        self.fallbacks_: dict[str, str] = {}
        level, growth = self.levels_[:, -1], self.growth_[:, -1]
        history = self.observed_.sum(axis=1)
        # Only zeros recently (no wave, or no more reporting): nothing to grow, the baseline.
        recent = np.nan_to_num(self.y_.values[:, -self.min_history:]) > 0
        usable = (self.observed_[:, -1] & np.isfinite(growth) & recent.any(axis=1)
                  & (history >= self.min_history))
        cum = damped_sum(self.phi_, horizon)
        sd = self._spread(horizon)
        out = np.empty((n_t, horizon, 23))
        for i in range(n_t):
            if usable[i] and np.all(np.isfinite(sd[i])):
                out[i] = normal_quantiles(level[i] + growth[i] * cum, sd[i], "log1p")
                continue
            self.fallbacks_[self.territories_[i]] = "short history, only zeros or no recent value"
            hist = self.y_.values[i]
            out[i] = hub_baseline_quantiles(np.clip(hist[np.isfinite(hist)], 0.0, None),
                                            horizon)
        if self.fallbacks_:
            log.info("growth: %d territories fall back to baseline", len(self.fallbacks_))
        return quantile_array(out, self.territories_, targets, model=self.alias,
                              attrs={"signal_fallbacks": dict(self.signal_fallbacks_)})
