"""Conformal calibration of quantile forecasts from past forecast errors.

Normalised conformalised quantile regression on the log1p scale: for each central interval
(level ``p``, quantiles ``(1-p)/2`` and ``(1+p)/2``) and each horizon, a past forecast with
median ``m``, log half-widths ``a`` (below) and ``b`` (above) and outcome ``y`` gets the score

    e = max((m - log1p y) / a, (log1p y - m) / b)

with ``m`` = log1p(median). ``e <= k`` exactly when the interval widened (``k > 1``) or narrowed
(``k < 1``) by the factor ``k`` covers ``y``; so taking ``k`` as the ``p``-quantile of recent
scores makes the interval cover a fraction ``p`` of recent outcomes. The median is left
unchanged. Only forecasts whose target date is before the new forecast date enter (their
outcome was known then): no look-ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from models.base import QUANTILES, tidy_quantiles

QCOLS = [f"q{q:g}" for q in QUANTILES]
_N_INTERVALS = (len(QUANTILES) - 1) // 2  # 11 central intervals around the median
_MEDIAN = len(QUANTILES) // 2
_LEVELS = np.array([1 - 2 * QUANTILES[j] for j in range(_N_INTERVALS)])  # 0.98 … 0.1


def forecast_rows(fc: xr.DataArray, forecast_date: pd.Timestamp) -> pd.DataFrame:
    """Wide table of a forecast: one row per (territory, horizon), one column per quantile."""
    n_t, n_h, n_q = fc.shape
    frame = pd.DataFrame(fc.values.reshape(n_t * n_h, n_q), columns=QCOLS)
    frame.insert(0, "forecast_date", pd.Timestamp(forecast_date))
    frame.insert(1, "territory", np.repeat(fc["territory"].values.astype(str), n_h))
    frame.insert(2, "horizon", np.tile(fc["horizon"].values, n_t))
    frame.insert(3, "target_end_date", np.tile(fc["target_date"].values, n_t))
    return frame


def interval_scores(quantiles: np.ndarray, observed: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    """Normalised conformity scores, shape (rows, 11 intervals).

    Parameters
    ----------
    quantiles:
        (rows, 23) past forecast quantiles.
    observed:
        (rows,) outcomes.
    eps:
        Floor of the log half-widths, so a zero-width forecast of a zero series stays finite.
    """
    lq = np.log1p(np.clip(quantiles, 0.0, None))
    m = lq[:, _MEDIAN : _MEDIAN + 1]
    a = np.maximum(m - lq[:, :_N_INTERVALS], eps)
    b = np.maximum(lq[:, ::-1][:, :_N_INTERVALS] - m, eps)
    z = np.log1p(np.clip(observed, 0.0, None))[:, None] - m
    return np.maximum(-z / a, z / b)


@dataclass
class ConformalCalibrator:
    """Interval scaling factors per horizon learnt from recent forecast errors.

    Parameters
    ----------
    window:
        Number of most recent forecast dates (per horizon) whose errors are used.
    prior_scores:
        Strength of the prior "the model's own intervals are right" (factor 1), in scores:
        a factor estimated from ``n`` scores is shrunk to ``k ** (n / (n + prior_scores))``.
        One national series gives 10 scores in a 10-week window, too few to trust alone;
        100 départements give 1,000.
    max_factor:
        Bound on the widening/narrowing factor (a freak outcome must not blow up every
        interval; on the log scale a factor 3 already turns ×1.5 into ×3.4).
    """

    window: int = 10
    prior_scores: float = 20.0
    max_factor: float = 3.0

    @classmethod
    def for_frequency(cls, frequency: str) -> ConformalCalibrator:
        """Default settings for a target's frequency.

        Daily targets learn from half a year of weekly forecast origins and trust their
        scores alone: the 7- and 14-day errors of smooth daily series (beds occupied) are
        autocorrelated, every model's own intervals were too narrow, and the prior kept a
        national series' 90 % intervals covering ~0.7 (development period 2020-09..2021-02:
        0.80/0.76 at 7/14 days with 10 origins and the prior, 0.92/0.84 with 26 and none;
        held out 2021-03..11: 0.78/0.63 before, 0.83/0.80 after; docs/MODELS.md).
        Weekly and quarterly targets keep the defaults, which scored best there.
        """
        if frequency == "daily":
            return cls(window=26, prior_scores=0.0)
        return cls()

    def fit(self, history: pd.DataFrame, as_of: pd.Timestamp) -> ConformalCalibrator:
        """Learn factors from ``history`` rows (``forecast_rows`` + ``observed``) known at as_of."""
        # On arrays, not DataFrame selections: the track record fits one calibrator per past
        # forecast date, model and level (~1,100 for the published targets); the same rows.
        as_of = np.datetime64(pd.Timestamp(as_of).as_unit("ns"))
        made = history["forecast_date"].to_numpy(dtype="datetime64[ns]")
        observed = history["observed"].to_numpy(float)
        keep = np.flatnonzero((history["target_end_date"].to_numpy(dtype="datetime64[ns]")
                               < as_of) & (made < as_of) & ~np.isnan(observed))
        horizons = history["horizon"].to_numpy()[keep]
        made, observed = made[keep], observed[keep]
        self.factors_: dict[int, np.ndarray] = {}
        self.n_scores_: dict[int, int] = {}
        if not keep.size:
            return self
        quantiles = history[QCOLS].to_numpy(float)[keep]
        for h in np.unique(horizons):
            at_h = horizons == h
            recent = np.unique(made[at_h])[-self.window :]
            rows = at_h & np.isin(made, recent)
            scores = interval_scores(quantiles[rows], observed[rows])
            self.n_scores_[int(h)] = len(scores)
            self.factors_[int(h)] = self._factors(scores)
        return self

    def _factors(self, scores: np.ndarray) -> np.ndarray:
        n = scores.shape[0]
        # Empirical p-quantile of the scores for each central interval p (0.98 … 0.1).
        k_hat = np.array([np.quantile(scores[:, j], p) for j, p in enumerate(_LEVELS)])
        k_hat = np.clip(k_hat, 1.0 / self.max_factor, self.max_factor)
        return np.exp(np.log(k_hat) * n / (n + self.prior_scores))

    def factors(self, horizon: int) -> np.ndarray:
        """Scaling factor of each central interval (0.98 … 0.1) at that horizon (1: no data)."""
        return self.factors_.get(int(horizon), np.ones(_N_INTERVALS))

    def transform(self, fc: xr.DataArray) -> xr.DataArray:
        """Calibrated copy of a (territory, horizon, quantile) forecast."""
        n_t, n_h, n_q = fc.shape
        k = np.stack([self.factors(int(h)) for h in fc["horizon"].values])  # (horizon, 11)
        values = apply_factors(fc.values.reshape(-1, n_q), np.tile(k, (n_t, 1)))
        return fc.copy(data=values.reshape(n_t, n_h, n_q)).assign_attrs(calibrated="conformal")


def apply_factors(quantiles: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Scale each central interval about the median on the log1p scale.

    Parameters
    ----------
    quantiles:
        (rows, 23) forecast quantiles.
    factors:
        (rows, 11) factor per central interval, widest (0.98) first.

    Returns
    -------
    (rows, 23) non-negative quantiles, sorted.
    """
    lq = np.log1p(np.clip(quantiles, 0.0, None))
    m = lq[:, _MEDIAN : _MEDIAN + 1]
    new = lq.copy()
    new[:, :_N_INTERVALS] = m - factors * (m - lq[:, :_N_INTERVALS])
    new[:, _N_INTERVALS + 1 :] = (m + factors * (lq[:, ::-1][:, :_N_INTERVALS] - m))[:, ::-1]
    return tidy_quantiles(np.expm1(new))


def calibrate_rows(
    rows: pd.DataFrame, history: pd.DataFrame, as_of: pd.Timestamp, settings: ConformalCalibrator
) -> pd.DataFrame:
    """Calibrate forecast rows made on ``as_of`` with the errors in ``history`` known then.

    Parameters
    ----------
    rows:
        ``forecast_rows`` of one model and forecast date.
    history:
        Earlier ``forecast_rows`` of the same model with an ``observed`` column (outcomes as
        known on ``as_of``).
    settings:
        Calibrator whose settings are used (a fresh one is fitted).
    """
    cal = ConformalCalibrator(settings.window, settings.prior_scores, settings.max_factor)
    cal.fit(history, as_of=as_of)
    k = np.stack([cal.factors(int(h)) for h in rows["horizon"]])
    rows = rows.copy()
    rows[QCOLS] = apply_factors(rows[QCOLS].to_numpy(float), k)
    return rows
