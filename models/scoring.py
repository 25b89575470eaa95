"""Scores of quantile forecasts: WIS, relative WIS, absolute error, coverage, bias.

Definitions follow Bracher et al. (2021, PLOS Comput Biol 17:e1008618) and scoringutils:

- interval score of the central ``(1-α)`` interval ``[l, u]``:
  ``IS_α = (u - l) + 2/α (l - y) 1{y < l} + 2/α (y - u) 1{y > u}``
- weighted interval score with K intervals and the median m:
  ``WIS = 1/(K + 1/2) · (1/2 |y - m| + Σ_k α_k/2 · IS_α_k)``
  which equals ``1/(K + 1/2) · Σ_q ρ_q(y)`` over the 23 quantiles, ρ the pinball loss
  (so WIS is in the units of the target, e.g. admissions per week);
- bias: ``1 - 2 max{τ : q_τ ≤ y}`` when ``y < m``, ``1 - 2 min{τ : q_τ ≥ y}`` when ``y > m``,
  0 at the median; > 0 means over-prediction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import QUANTILES_ARR


def _pairs(levels: np.ndarray) -> list[tuple[int, int, float]]:
    """(lower index, upper index, α) of every symmetric interval in ``levels``."""
    out = []
    for i, q in enumerate(levels):
        if q < 0.5:
            j = int(np.argmin(np.abs(levels - (1 - q))))
            if not np.isclose(levels[j], 1 - q):
                raise ValueError(f"quantile {q} has no symmetric partner {1 - q}")
            out.append((i, j, 2 * q))
    return out


def interval_score(lower: np.ndarray, upper: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Interval score of central ``(1 - alpha)`` intervals (Gneiting & Raftery 2007)."""
    return (
        (upper - lower)
        + 2 / alpha * np.clip(lower - y, 0, None)
        + 2 / alpha * np.clip(y - upper, 0, None)
    )


def wis(
    quantiles: np.ndarray, y: np.ndarray, levels: np.ndarray = QUANTILES_ARR
) -> np.ndarray:
    """Weighted interval score of each forecast.

    Parameters
    ----------
    quantiles:
        (n, Q) predictive quantiles at ``levels`` (Q odd, symmetric around the median).
    y:
        (n,) outcomes.
    levels:
        (Q,) quantile levels.

    Returns
    -------
    (n,) WIS, in the units of ``y``.
    """
    quantiles = np.atleast_2d(np.asarray(quantiles, dtype=float))
    y = np.asarray(y, dtype=float).reshape(-1)
    median = quantiles[:, int(np.argmin(np.abs(levels - 0.5)))]
    pairs = _pairs(np.asarray(levels))
    total = 0.5 * np.abs(y - median)
    for i, j, alpha in pairs:
        total = total + alpha / 2 * interval_score(quantiles[:, i], quantiles[:, j], y, alpha)
    return total / (len(pairs) + 0.5)


def coverage(
    quantiles: np.ndarray, y: np.ndarray, level: float, levels: np.ndarray = QUANTILES_ARR
) -> np.ndarray:
    """Whether ``y`` lies in the central interval of that level (bounds included), (n,) bool."""
    lo = int(np.argmin(np.abs(levels - (1 - level) / 2)))
    hi = int(np.argmin(np.abs(levels - (1 + level) / 2)))
    quantiles = np.atleast_2d(quantiles)
    return (y >= quantiles[:, lo]) & (y <= quantiles[:, hi])


def bias(quantiles: np.ndarray, y: np.ndarray, levels: np.ndarray = QUANTILES_ARR) -> np.ndarray:
    """scoringutils' quantile bias in [-1, 1]; > 0 over-prediction, (n,)."""
    quantiles = np.atleast_2d(np.asarray(quantiles, dtype=float))
    y = np.asarray(y, dtype=float).reshape(-1)
    median = quantiles[:, int(np.argmin(np.abs(levels - 0.5)))]
    below = quantiles <= y[:, None]  # q_τ ≤ y
    above = quantiles >= y[:, None]
    max_tau = np.where(below.any(axis=1), np.max(np.where(below, levels, -np.inf), axis=1), 0.0)
    min_tau = np.where(above.any(axis=1), np.min(np.where(above, levels, np.inf), axis=1), 1.0)
    out = np.where(y < median, 1 - 2 * max_tau, np.where(y > median, 1 - 2 * min_tau, 0.0))
    return out


def score_table(frame: pd.DataFrame, quantile_cols: list[str]) -> pd.DataFrame:
    """Per-forecast scores of a wide table with an ``observed`` column.

    Adds ``wis``, ``ae_median``, ``cov50``, ``cov90``, ``cov95``, ``bias`` (rows without an
    outcome are dropped).
    """
    frame = frame[frame["observed"].notna()].copy()
    q = frame[quantile_cols].to_numpy(float)
    y = frame["observed"].to_numpy(float)
    levels = np.array([float(c.lstrip("q")) for c in quantile_cols])
    frame["wis"] = wis(q, y, levels)
    frame["ae_median"] = np.abs(y - q[:, int(np.argmin(np.abs(levels - 0.5)))])
    for level in (0.5, 0.9, 0.95):
        frame[f"cov{round(level * 100)}"] = coverage(q, y, level, levels)
    frame["bias"] = bias(q, y, levels)
    return frame


def summarise(
    scored: pd.DataFrame, by: list[str], baseline: str | None = "baseline"
) -> pd.DataFrame:
    """Mean scores by group, with the WIS relative to the baseline on the same forecasts.

    Parameters
    ----------
    scored:
        Output of :func:`score_table` with a ``model`` column.
    by:
        Grouping columns besides ``model`` (e.g. ``["horizon"]``).
    baseline:
        Model whose WIS is the denominator; relative WIS is the ratio of mean WIS over the
        forecasts (territory, date, horizon) that both models made.
    """
    cols = ["wis", "ae_median", "cov50", "cov90", "cov95", "bias"]
    out = scored.groupby(["model", *by])[cols].mean().reset_index()
    out["n"] = scored.groupby(["model", *by]).size().to_numpy()
    if baseline is not None and baseline in set(scored["model"]):
        keys = ["territory", "forecast_date", "horizon"]
        base = scored[scored["model"] == baseline][[*keys, "wis"]].rename(
            columns={"wis": "wis_base"}
        )
        paired = scored.merge(base, on=keys, how="inner")
        ratio = paired.groupby(["model", *by])[["wis", "wis_base"]].sum()
        ratio["rel_wis"] = ratio["wis"] / ratio["wis_base"]
        out = out.merge(ratio["rel_wis"].reset_index(), on=["model", *by], how="left")
    return out


def median_territory_rel_wis(
    scored: pd.DataFrame, by: list[str], baseline: str = "baseline"
) -> pd.DataFrame:
    """Relative WIS per territory (ratio of WIS sums), then its median over territories;
    ``beats_baseline`` counts the territories whose ratio is below 1, out of ``territories``."""
    keys = ["territory", "forecast_date", "horizon"]
    base = scored[scored["model"] == baseline][[*keys, "wis"]].rename(columns={"wis": "wis_base"})
    paired = scored.merge(base, on=keys, how="inner")
    per = paired.groupby(["model", "territory", *by])[["wis", "wis_base"]].sum()
    # A territory where the baseline is perfect (all zeros) has no defined ratio.
    per = per[per["wis_base"] > 0]
    per["rel_wis"] = per["wis"] / per["wis_base"]
    cov = scored.groupby(["model", "territory", *by])[["cov50", "cov90"]].mean()
    per = per.join(cov)
    per["beats_baseline"] = (per["rel_wis"] < 1).astype(int)
    groups = per.groupby(["model", *by])
    out = groups[["rel_wis", "cov50", "cov90"]].median()
    out["beats_baseline"] = groups["beats_baseline"].sum()
    out["territories"] = groups.size()
    return out.reset_index()
