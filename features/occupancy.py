"""Bed occupancy rebuilt from flows where SPF did not publish it.

SPF published beds occupied (``hosp``) and ICU beds occupied (``icu``) for every département,
but the shared data holds them only for 2020-H2 (100 départements) and for Bourgogne-Franche-Comté
(2020-03..2021-02). Flows (admissions, discharges, deaths) exist everywhere, every day. Two
methods fill the gaps; their measured error is in :func:`evaluate` and the README.

``hosp`` — flow accounting anchored on the nearest published stock. A stock changes by
admissions minus discharges minus deaths, plus transfers that SI-VIC does not count as flows
(to rehabilitation care, between départements). That residual is estimated per département as
the median of (published daily change − net flow) over the published days, and added back::

    hosp(t) = hosp(a) + Σ_{s=a+1..t} (net(s) + b_d)        a = last published day before t
    hosp(t) = hosp(a) − Σ_{s=t+1..a} (net(s) + b_d)        a = first published day after t

floored at zero. Départements that never published a stock (976, 978) use the convolution
below, like ``icu``.

``icu`` — SI-VIC publishes ICU admissions but no ICU exits, so the stock cannot be accounted
for. Occupancy is the convolution of ICU admissions with the survival function of a
gamma-distributed length of stay (``S(k) = P(LOS > k)``), the mean stay fitted on all published
stocks at once (one national value, DREES reports a median critical-care stay of 11 days), then
scaled per département by the least-squares factor on its published days (median factor where
none), so that the series meets the published stocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

PUBLISHED, REBUILT = 1, 2
LOS_SHAPE = 2.0  # gamma shape of lengths of stay: right-skewed, as DREES describes
LOS_GRID_DAYS = np.arange(3.0, 31.0, 0.5)
#: Distance (days to the nearest published stock) at which the accounting and the convolution
#: are equally uncertain. Measured (bench/occupancy_rebuild.py): the accounting's error grows
#: about linearly with distance (≈ 0.35 bed/day for a département), the convolution's is flat
#: (≈ 50 beds), so they cross near 140 days; inverse-variance weights follow.
EQUAL_ERROR_DAYS = 140.0


@dataclass
class Rebuilt:
    """A rebuilt stock.

    Attributes
    ----------
    values:
        Beds occupied, shape ``(territory, date)``; published where available.
    origin:
        ``PUBLISHED`` (1), ``REBUILT`` (2) or 0 (unknown), same shape.
    parameters:
        What was fitted (per-département bias or scale, mean length of stay), for the record.
    """

    values: np.ndarray
    origin: np.ndarray
    parameters: dict


def survival_kernel(mean_days: float, length: int = 120, shape: float = LOS_SHAPE) -> np.ndarray:
    """``S(k) = P(LOS > k)`` for ``k = 0..length-1`` under a gamma length of stay."""
    k = np.arange(length)
    return stats.gamma.sf(k, a=shape, scale=mean_days / shape)


def convolve_admissions(admissions: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Occupancy implied by admissions ``(territory, date)`` and a survival kernel."""
    adm = np.nan_to_num(admissions)
    n = adm.shape[1]
    out = np.empty_like(adm, dtype=float)
    for i in range(adm.shape[0]):
        out[i] = np.convolve(adm[i], kernel)[:n]
    return out


def rebuild_by_convolution(admissions: np.ndarray, published: np.ndarray) -> Rebuilt:
    """Occupancy = admissions ∗ survival(LOS), scaled per département on published stocks."""
    has_pub = ~np.isnan(published)
    best = (np.inf, None, None)
    for mean in LOS_GRID_DAYS:
        base = convolve_admissions(admissions, survival_kernel(mean))
        scale = _scales(base, published, has_pub)
        err = np.nansum((base * scale[:, None] - published) ** 2)
        if err < best[0]:
            best = (err, mean, (base, scale))
    _, mean, (base, scale) = best
    values = base * scale[:, None]
    values = np.where(has_pub, published, values)
    origin = np.where(has_pub, PUBLISHED, REBUILT).astype(np.int8)
    return Rebuilt(values, origin, {"method": "convolution", "mean_length_of_stay_days": mean,
                                    "los_shape": LOS_SHAPE, "scale": scale})


def _scales(base: np.ndarray, published: np.ndarray, has_pub: np.ndarray) -> np.ndarray:
    num = np.where(has_pub, base * np.nan_to_num(published), 0).sum(axis=1)
    den = np.where(has_pub, base**2, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = num / den
    fitted = has_pub.any(axis=1) & np.isfinite(scale) & (den > 0)
    fallback = np.median(scale[fitted]) if fitted.any() else 1.0
    return np.where(fitted, scale, fallback)


def rebuild_by_accounting(net_flow: np.ndarray, published: np.ndarray,
                          admissions: np.ndarray) -> Rebuilt:
    """Flow accounting anchored on the nearest published stock (see module docstring)."""
    n_terr, n_days = published.shape
    values = np.full(published.shape, np.nan)
    origin = np.zeros(published.shape, dtype=np.int8)
    bias = np.full(n_terr, np.nan)
    net = np.nan_to_num(net_flow)
    distance = np.full(published.shape, np.inf)
    no_anchor = []
    for i in range(n_terr):
        pub = published[i]
        known = np.flatnonzero(~np.isnan(pub))
        if known.size == 0:
            no_anchor.append(i)
            continue
        change = np.diff(pub)
        both = ~np.isnan(change)
        bias[i] = np.median(change[both] - net[i, 1:][both]) if both.any() else 0.0
        step = net[i] + bias[i]
        cum = np.cumsum(step)
        # Index of the last published day at or before t, and of the first at or after t.
        prev_idx = np.maximum.accumulate(np.where(~np.isnan(pub), np.arange(n_days), -1))
        next_idx = np.minimum.accumulate(
            np.where(~np.isnan(pub), np.arange(n_days), n_days)[::-1])[::-1]
        t = np.arange(n_days)
        forward = np.where(prev_idx >= 0, pub[np.clip(prev_idx, 0, None)]
                           + cum[t] - cum[np.clip(prev_idx, 0, None)], np.nan)
        backward = np.where(next_idx < n_days, pub[np.clip(next_idx, None, n_days - 1)]
                            - (cum[np.clip(next_idx, None, n_days - 1)] - cum[t]), np.nan)
        dist_prev = np.where(prev_idx >= 0, t - prev_idx, np.inf)
        dist_next = np.where(next_idx < n_days, next_idx - t, np.inf)
        rebuilt = np.where(dist_prev <= dist_next, forward, backward)
        distance[i] = np.minimum(dist_prev, dist_next)
        values[i] = np.maximum(rebuilt, 0.0)
        origin[i] = REBUILT
        values[i, known] = pub[known]
        origin[i, known] = PUBLISHED
    # Far from any anchor the accounting drifts (the residual b changes over time); the
    # convolution does not drift but is less precise near anchors. Blend them with a weight
    # that decays with the distance to the nearest published stock.
    conv = rebuild_by_convolution(admissions, published)
    weight = 1.0 / (1.0 + (distance / EQUAL_ERROR_DAYS) ** 2)
    anchored = np.isfinite(distance)
    values = np.where(anchored, weight * values + (1 - weight) * conv.values, conv.values)
    origin = np.where(anchored | (conv.origin > 0), np.maximum(origin, conv.origin), 0)
    params = {"method": "flow accounting blended with convolution",
              "equal_error_days": EQUAL_ERROR_DAYS, "bias_per_day": bias,
              "convolution_for": no_anchor, "convolution": conv.parameters}
    return Rebuilt(values, origin.astype(np.int8), params)
