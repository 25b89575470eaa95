"""Reproduction number of hospital admissions by the renewal equation (Cori et al. 2013).

Admissions are used as the incidence series: their reproduction number R^A(t) is that of the
infections about one infection-to-admission delay earlier (Paireau et al. 2023 use the same
"R of admissions"). With a flat prior Gamma(a, b) and a window of ``tau`` days ending on day t,
the posterior of R is Gamma(a + sum I, 1 / (1/b + sum Lambda)), Lambda_t = sum_s w_s I_{t-s}.
"""

from __future__ import annotations

import numpy as np

PRIOR_SHAPE = 1.0  # Cori et al. default: prior mean 5, SD 5 (vague)
PRIOR_SCALE = 5.0


def infectiousness(incidence: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Total infectiousness ``Lambda_t = sum_{s>=1} w_s I_{t-s}``.

    Parameters
    ----------
    incidence:
        Shape (..., D), counts/day, no NaN.
    w:
        Generation interval, shape (G + 1,), ``w[0] = 0``.

    Returns
    -------
    np.ndarray
        Same shape as ``incidence``.
    """
    out = np.zeros_like(incidence, dtype=float)
    for s in range(1, len(w)):
        if w[s] > 0:
            out[..., s:] += w[s] * incidence[..., :-s]
    return out


def backfill_start(
    incidence: np.ndarray, n_fit: int = 7, n_back: int = 21
) -> tuple[np.ndarray, int]:
    """Prepend ``n_back`` days before the first published day, extrapolated backwards at the
    growth rate of the first ``n_fit`` days (pooled over territories).

    Why: SPF admissions start on 2020-03-19, two days after the first lockdown. Treating the
    unseen earlier admissions as zero would inflate Lambda's denominator deficit and R^A in the
    first weeks — exactly when the lockdown's effect shows. Pooling the rate over territories
    avoids noisy per-département fits.

    Parameters
    ----------
    incidence:
        Shape (T, D), first column = first published day (NaN already replaced by 0).

    Returns
    -------
    (np.ndarray, int)
        Extended array of shape (T, n_back + D) and ``n_back``.
    """
    head = incidence[:, :n_fit].sum(axis=0)
    x = np.arange(n_fit)
    ok = head > 0
    r = float(np.polyfit(x[ok], np.log(head[ok]), 1)[0]) if ok.sum() >= 3 else 0.0
    r = min(max(r, 0.0), 0.35)  # growth only; cap at doubling in 2 days
    level = incidence[:, :n_fit].mean(axis=1)
    # Level at day (n_fit-1)/2 of the fit window, extrapolated back.
    k = np.arange(-n_back, 0) - (n_fit - 1) / 2
    back = level[:, None] * np.exp(r * k)[None, :]
    return np.concatenate([back, incidence], axis=1), n_back


def cori_posterior(
    incidence: np.ndarray, w: np.ndarray, tau: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Gamma posterior of R for the window of ``tau`` days ending on each day.

    Parameters
    ----------
    incidence:
        Shape (T, D) counts/day (no NaN).
    w:
        Generation interval (G + 1,).
    tau:
        Window length in days (7 removes the weekday pattern of admissions).

    Returns
    -------
    (shape, scale):
        Arrays (T, D); NaN for the first ``tau - 1`` days.
    """
    lam = infectiousness(incidence, w)
    c_i = np.cumsum(incidence, axis=-1)
    c_l = np.cumsum(lam, axis=-1)
    s_i = np.full_like(c_i, np.nan)
    s_l = np.full_like(c_l, np.nan)
    s_i[..., tau - 1 :] = c_i[..., tau - 1 :] - np.concatenate(
        [np.zeros(c_i.shape[:-1] + (1,)), c_i[..., :-tau]], axis=-1
    )
    s_l[..., tau - 1 :] = c_l[..., tau - 1 :] - np.concatenate(
        [np.zeros(c_l.shape[:-1] + (1,)), c_l[..., :-tau]], axis=-1
    )
    shape = PRIOR_SHAPE + s_i
    scale = 1.0 / (1.0 / PRIOR_SCALE + s_l)
    return shape, scale
