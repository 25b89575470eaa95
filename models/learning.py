"""scikit-learn adapter: one global gradient-boosting model across territories.

For each horizon ``h`` a ``HistGradientBoostingRegressor`` learns the change of ``log1p(y)``
between the forecast origin and ``h`` periods later (and a second one its typical error),
from features that are
comparable across territories: recent growth rates, the level per 100,000 inhabitants, calendar
(public holidays in the target period, weekday for daily series) and optional national
regressors. Pooling ~100 départements gives the model many past waves to learn from, which a
per-series model of 30–80 weekly points cannot see.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, ClassVar, Self

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
from models.signals import parent_positions as _parent_positions
from models.signals import resolve_signals

log = logging.getLogger(__name__)


@lru_cache(maxsize=32)
def _french_holidays(first_year: int, last_year: int) -> np.ndarray:
    """French public holidays of these years, sorted (datetime64[ns]; read once per span:
    every fit at every horizon asks for the same years)."""
    import holidays

    days = holidays.France(years=range(first_year, last_year + 1))
    return np.sort(pd.DatetimeIndex(list(days.keys())).to_numpy(dtype="datetime64[ns]"))


def _holiday_counts(dates: pd.DatetimeIndex, step: pd.DateOffset) -> np.ndarray:
    """Number of French public holidays in the period ending at each date (the holidays
    ``h`` with ``d - span < h <= d``: two binary searches in the sorted holidays)."""
    hol = _french_holidays(dates.min().year - 1, dates.max().year + 1)
    span = 7 if isinstance(step, pd.offsets.Week) else 1
    ends = dates.to_numpy(dtype="datetime64[ns]")
    starts = (dates - pd.Timedelta(days=span)).to_numpy(dtype="datetime64[ns]")
    counts = np.searchsorted(hol, ends, side="right") - np.searchsorted(hol, starts, side="right")
    return counts.astype(float)


class GlobalGBM(Forecaster):
    """Global gradient boosting of log growth (``gbm``).

    The median change comes from a squared-error model, its spread from a second model of
    the first one's absolute errors; the 23 Hub quantiles assume a normal on the log1p scale.

    Parameters
    ----------
    lags:
        Growth rates ``log1p(y_t) - log1p(y_{t-k})`` used as features (periods).
    parent_growth:
        Add the parent territory's growth rates (when the parent is among the fitted
        territories, as it is when the pipeline pools the hierarchy).
    exog:
        Variables of ``X`` (national or per territory; a territory without values takes its
        nearest ancestor's) whose level and 1- and 2-period changes (log scale when
        non-negative) are features. Variables absent from ``X`` are skipped.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf:
        ``HistGradientBoostingRegressor`` settings (small trees: few hundred rows per wave).
    signals:
        Leading signals (cube variables, e.g. ``incidence_rate_7d``), used like ``exog`` but
        checked at each fit by :func:`models.signals.resolve_signals`: a signal that has not
        started, has stopped or changed scheme is dropped for that fit (logged, and named in
        the forecast's ``signal_fallbacks`` attribute); a territory whose own series stopped
        takes its nearest live ancestor's.
    signal_levels:
        Use each signal's level as well as its 1- and 2-period changes: True (every signal),
        False (changes only) or the names of the signals whose level is used.
    signal_max_age_days, signal_min_history_days:
        A signal is live if its last value is at most this old at the origin (it is then
        used lagged by that delay), and usable after this much history.
    window:
        Train on origins in the last ``window`` periods only (None = all).
    daily_window:
        Default ``window`` of daily series (~100 territories × 182 days is plenty).
    min_rows:
        Training rows needed at a horizon (fewer: the Hub baseline for every territory).
    random_state:
        Seed of the gradient boosting (forecasts are reproducible).
    pool_horizons:
        Fit one centre and one spread model for all the steps a forecast fits, the step
        being a feature (the training rows of every step stacked), instead of one pair per
        step: two fits instead of eight for the 4 weekly horizons, each on four times the
        rows (a gradient-boosting fit costs far less than four times as much on four times
        the rows: per-tree work that does not grow with them).
    """

    alias: ClassVar[str] = "gbm"
    is_global: ClassVar[bool] = True
    pools_territories: ClassVar[bool] = True
    #: ``predict(horizon, needed=...)`` fits only the steps asked for (see :meth:`predict`).
    predicts_needed_steps: ClassVar[bool] = True

    def __init__(
        self,
        *,
        lags: tuple[int, ...] = (1, 2, 3, 4),
        # Leading indicators, where the cube has them (weekly SurSaUD, by région; a
        # département takes its région's): Covid shares of SOS Médecins acts and of
        # emergency visits turn a week or two before admissions do.
        exog: tuple[str, ...] = ("sos_medecins_covid_rate", "er_visits_covid_rate"),
        signals: tuple[str, ...] = (),
        signal_levels: bool | tuple[str, ...] = True,
        signal_max_age_days: int = 7,
        signal_min_history_days: int = 56,
        parent_growth: bool = True,
        max_iter: int = 80,
        learning_rate: float = 0.08,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 30,
        window: int | None = None,
        daily_window: int = 182,
        min_rows: int = 200,
        random_state: int = 0,
        pool_horizons: bool = False,
    ) -> None:
        self.lags = lags
        self.exog = exog
        self.signals = signals
        self.signal_levels = signal_levels
        self.signal_max_age_days = signal_max_age_days
        self.signal_min_history_days = signal_min_history_days
        self.parent_growth = parent_growth
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.window = window
        self.daily_window = daily_window
        self.min_rows = min_rows
        self.random_state = random_state
        self.pool_horizons = pool_horizons

    # -- features -----------------------------------------------------------------------------
    def _log_levels(self, y: xr.DataArray) -> np.ndarray:
        """log1p of the (smoothed, for daily data) series, forward-filled; (territory, date)."""
        frame = pd.DataFrame(np.clip(y.values.T, 0.0, None))  # (date, territory)
        period = season_length(self.step_)
        if period > 1:  # weekday reporting effect: features on the 7-day mean
            frame = frame.rolling(period, min_periods=period).mean()
        return np.log1p(frame.ffill().to_numpy().T)

    def _features(
        self,
        levels: np.ndarray,
        y: xr.DataArray,
        X: xr.Dataset | None,
    ) -> np.ndarray:
        """Feature array (territory, date, feature) at every origin."""
        n_t = levels.shape[0]
        feats = [levels, *_growth(levels, self.lags)]
        if self.parent_growth and "territory_parent" in y.coords:
            # The parent's (région's, France's) growth is a less noisy view of the same wave
            # than a small département's own counts.
            pos = _parent_positions(y)
            parent = np.where(pos >= 0, pos, np.arange(n_t))  # no parent: its own growth
            feats += _growth(levels[parent], self.lags)
        pop = y.coords["population"].values.astype(float) if "population" in y.coords else None
        if pop is not None and np.all(pop > 0):
            feats.append(levels - np.log1p(pop / 1e5)[:, None])  # ~log incidence per 100k
        for name in self.exog:
            if X is None or name not in X:
                continue
            v = _exog_values(X[name], y, n_t)
            # Recent change of the indicator (log scale for counts and rates, which grow
            # multiplicatively like the target): e.g. SOS Médecins Covid acts rise a week or
            # two before admissions do.
            if np.nanmin(v, initial=np.inf) >= 0:
                v = np.log1p(v)
            feats += [v, *_growth(v, (1, 2))]
        feats += self._signal_features(y, X)
        return np.stack(feats, axis=-1)

    def _signal_features(self, y: xr.DataArray, X: xr.Dataset | None) -> list[np.ndarray]:
        """Features of the leading signals live at the origin; records the fallbacks."""
        self.signal_fallbacks_: dict[str, str] = {}
        if not self.signals:
            return []
        days = {pd.offsets.Day: 1, pd.offsets.Week: 7, pd.offsets.QuarterEnd: 91}.get(
            type(self.step_), 365)
        resolved = resolve_signals(
            self.signals, X, y,
            max_age=-(-self.signal_max_age_days // days),
            min_history=-(-self.signal_min_history_days // days),
            model=self.alias,
        )
        self.signal_fallbacks_ = resolved.fallbacks
        feats = []
        for name in self.signals:
            if name not in resolved.values:
                continue
            v = resolved.values[name]
            if np.nanmin(v, initial=np.inf) >= 0:
                v = np.log1p(v)
            levels = self.signal_levels
            if levels is True or (not isinstance(levels, bool) and name in levels):
                feats.append(v)
            feats += _growth(v, (1, 2))
        return feats

    def _calendar(self, target_dates: pd.DatetimeIndex) -> np.ndarray:
        cal = [_holiday_counts(target_dates, self.step_)]
        if isinstance(self.step_, pd.offsets.Day):
            cal.append(target_dates.dayofweek.to_numpy(dtype=float))
        return np.column_stack(cal)

    # -- fit / predict ------------------------------------------------------------------------
    def fit(self, y: xr.DataArray, X: xr.Dataset | None = None) -> Self:
        self._store_axis(y)
        self.y_ = y
        self.levels_ = self._log_levels(y)
        self.features_ = self._features(self.levels_, y, X)
        # Keyed by step, or by the tuple of steps of a pooled fit.
        self.models_: dict[int | tuple[int, ...], list[Any] | None] = {}
        self.unseen_: dict[int | tuple[int, ...], np.ndarray] = {}
        self.fallbacks_: dict[str, str] = {}
        return self

    def _training_rows(self, h: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Features (with the target period's calendar) and targets of step ``h`` at every
        training origin with both defined; None when fewer than ``min_rows``."""
        n_t, n_d, _ = self.features_.shape
        raw = np.log1p(np.clip(self.y_.values, 0.0, None))  # targets are raw, features smoothed
        dates = pd.DatetimeIndex(self.y_["date"].values)
        window = self.window
        if isinstance(self.step_, pd.offsets.Day):
            window = window or self.daily_window  # 6 months of daily origins
        first = 0 if not window else max(0, n_d - h - window)
        origins = np.arange(first, n_d - h)
        if origins.size == 0:
            return None
        x = self.features_[:, origins, :]
        target = raw[:, origins + h] - self.levels_[:, origins]
        cal = self._calendar(dates[origins + h])
        x = np.concatenate([x, np.broadcast_to(cal, (n_t, *cal.shape))], axis=-1)
        x = x.reshape(-1, x.shape[-1])
        target = target.reshape(-1)
        keep = np.isfinite(target) & np.isfinite(x[:, 0])
        if keep.sum() < self.min_rows:
            return None
        return x[keep], target[keep]

    def _fit_horizon(self, h: int) -> list[Any] | None:
        rows = self._training_rows(h)
        if rows is None:
            return None
        x, target = rows
        self.unseen_[h] = self._hold_unseen(x)
        return self._fit_pair(x, target)

    def _fit_pooled(self, steps: tuple[int, ...]) -> list[Any] | None:
        """One pair for ``steps``, the step as last feature; None when a step has fewer than
        ``min_rows`` rows (as :meth:`_fit_horizon` would give for it)."""
        parts = [self._training_rows(h) for h in steps]
        if any(part is None for part in parts):
            return None
        x = np.concatenate([np.column_stack([p[0], np.full(len(p[0]), float(h))])
                            for h, p in zip(steps, parts, strict=True)])
        target = np.concatenate([p[1] for p in parts])
        self.unseen_[steps] = self._hold_unseen(x)
        return self._fit_pair(x, target)

    @staticmethod
    def _hold_unseen(x: np.ndarray) -> np.ndarray:
        """A feature not yet observed at any training origin (a lag longer than the history,
        an indicator that starts later) is all-NaN, which HGB's binning rejects: it carries
        no information yet, so it is held at 0 here and at prediction (in place)."""
        unseen = ~np.isfinite(x).any(axis=0)
        x[:, unseen] = 0.0
        return unseen

    def _fit_pair(self, x: np.ndarray, target: np.ndarray) -> list[Any]:
        center = self._regressor().fit(x, target)
        # Spread: a second model of the absolute error of the first (E|e| = sd·sqrt(2/π) for
        # a normal error). Quantile loss would give it directly but is ~8x slower (one
        # percentile per leaf and iteration); in-sample errors are too small, which the
        # conformal calibration corrects.
        abs_err = np.abs(target - center.predict(x))
        spread = self._regressor().fit(x, abs_err)
        return [center, spread]

    def _regressor(self):
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.random_state,
        )

    def predict(self, horizon: int, X_future: xr.Dataset | None = None,
                needed: set[int] | None = None) -> xr.DataArray:
        """Quantiles of steps 1..``horizon``.

        ``needed``: the steps the caller keeps (the pipeline keeps the Hub horizons' steps,
        e.g. 8 and 15 of a daily 15-step forecast). When they are all among the steps fitted
        anyway, only they are fitted: their quantiles are exactly those of a full predict, the
        other steps are interpolated between them (a daily forecast then costs 2 fits, not 6).
        """
        targets = future_dates(self.last_date_, self.step_, horizon)
        n_t = len(self.territories_)
        origin = self.features_[:, -1, :]
        level = self.levels_[:, -1]
        # Models are fitted at horizons 1–4 and at every 7th step counting back from the last
        # (a daily 15-step forecast needs 6 fits, not 15); the log-growth and its spread are
        # interpolated in between. Counting back from the last step fits the Hub's 7- and
        # 14-day targets (7 days apart, the last one last) on their own weekday: interpolating
        # a Monday between two Sunday fits under-forecast daily admissions by the weekend dip.
        fit_h = sorted({*range(1, min(4, horizon) + 1), *range(horizon, 4, -7)})
        if needed and set(needed) <= set(fit_h):
            fit_h = sorted(needed)
        center = np.full((n_t, len(fit_h)), np.nan)
        spread = np.full((n_t, len(fit_h)), np.nan)
        pooled = tuple(fit_h) if self.pool_horizons else None
        if pooled is not None and pooled not in self.models_:
            self.models_[pooled] = self._fit_pooled(pooled)
        for j, h in enumerate(fit_h):
            key = pooled or h
            if key not in self.models_:
                self.models_[key] = self._fit_horizon(h)
            if self.models_[key] is None:
                continue
            cal = self._calendar(targets[h - 1 : h])
            x = np.concatenate([origin, np.repeat(cal, n_t, axis=0)], axis=1)
            if pooled is not None:
                x = np.column_stack([x, np.full(n_t, float(h))])
            x[:, self.unseen_[key]] = 0.0
            # HGB handles the NaN features of young series natively.
            center[:, j], spread[:, j] = (m.predict(x) for m in self.models_[key])
        usable = np.isfinite(origin[:, 0]) & np.all(np.isfinite(center), axis=1)
        out = np.empty((n_t, horizon, 23))
        steps = np.arange(1, horizon + 1)
        for i in np.flatnonzero(usable):
            c = np.interp(steps, fit_h, center[i])
            sd = np.maximum(np.interp(steps, fit_h, spread[i]), 1e-3) * np.sqrt(np.pi / 2)
            out[i] = normal_quantiles(level[i] + c, sd, "log1p")
        for i in np.flatnonzero(~usable):
            territory = self.territories_[i]
            self.fallbacks_.setdefault(territory, "too little training data or no recent value")
            hist = self.y_.values[i]
            out[i] = hub_baseline_quantiles(np.clip(hist[np.isfinite(hist)], 0.0, None), horizon)
        if self.fallbacks_:
            log.info("gbm: %d territories fall back to baseline", len(self.fallbacks_))
        attrs = {"signal_fallbacks": dict(self.signal_fallbacks_)} if self.signals \
            else None
        return quantile_array(out, self.territories_, targets, model=self.alias, attrs=attrs)


def _exog_values(da: xr.DataArray, y: xr.DataArray, n_t: int) -> np.ndarray:
    """A regressor as (territory, date) floats, forward-filled.

    A national regressor (no territory dim) is repeated for every territory. A territorial one
    missing for a territory (SurSaUD is published by région, not département) takes the value
    of its nearest ancestor that has it (département → région → France).
    """
    if "territory" not in da.dims:
        v = np.tile(np.asarray(da.values, dtype=float), (n_t, 1))
    else:
        da = da.sel(territory=y["territory"].values).transpose("territory", ...)
        v = np.asarray(da.values, dtype=float).copy()
        pos = _parent_positions(y)
        for i in range(n_t):
            j = i
            for _ in range(3):  # commune → département → région → France
                if np.isfinite(v[i]).any() or pos[j] < 0:
                    break
                j = pos[j]
                v[i] = v[j]
    return pd.DataFrame(v.T).ffill().to_numpy().T


def _growth(levels: np.ndarray, lags) -> list[np.ndarray]:
    """``levels_t - levels_{t-k}`` for each lag k, NaN where undefined; (territory, date) each."""
    out = []
    for k in lags:
        shifted = np.full_like(levels, np.nan)
        shifted[:, k:] = levels[:, :-k]
        out.append(levels - shifted)
    return out
