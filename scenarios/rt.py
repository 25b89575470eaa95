"""Reproduction number of hospital admissions by the renewal equation (Cori et al. 2013).

Admissions are used as the incidence series: their reproduction number R^A(t) is that of the
infections about one infection-to-admission delay earlier (Paireau et al. 2023 use the same
"R of admissions"). With a flat prior Gamma(a, b) and a window of ``tau`` days ending on day t,
the posterior of R is Gamma(a + sum I, 1 / (1/b + sum Lambda)), Lambda_t = sum_s w_s I_{t-s}.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

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


def rt_table(
    daily: Any,
    territories: list[str] | None = None,
    params: Any = None,
    tau: int = 7,
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95),
) -> pd.DataFrame:
    """R(t) of admissions per territory and day, with posterior quantiles.

    Parameters
    ----------
    daily:
        Daily cube (territory, date) with ``inc_hosp``; cut it at ``as_of`` beforehand.
    territories:
        Codes (default: all).
    params:
        :class:`scenarios.params.EpiParameters` (generation interval); default values.
    tau:
        Window in days.
    quantiles:
        Posterior quantiles to report.

    Returns
    -------
    pandas.DataFrame
        Columns ``territory, date, r_mean, r_q05, r_q50, r_q95`` (one per quantile) and
        ``admissions_window`` (admissions in the window); rows only where the window holds at
        least 10 admissions, from the first published day (admissions before it are
        extrapolated, see :func:`backfill_start`). The window ends on ``date``; the R it
        reports is that of infections about one infection-to-admission delay (≈ 10 d) earlier.
    """
    from scipy import stats

    from scenarios.params import EpiParameters

    params = params or EpiParameters()
    w = params.generation_interval()
    ds = daily.sel(territory=territories) if territories else daily
    inc = ds["inc_hosp"].values.astype(float)
    cols = np.where(np.isfinite(inc).any(axis=0))[0]
    if len(cols) == 0:
        return pd.DataFrame(columns=["territory", "date", "r_mean", "admissions_window"])
    first = int(cols[0])
    # Same start-of-series treatment as the learning step (see backfill_start).
    ext, n_back = backfill_start(np.nan_to_num(inc[:, first:]))
    shape, scale = cori_posterior(ext, w, tau)
    shape, scale = shape[:, n_back:], scale[:, n_back:]
    n_win = shape - PRIOR_SHAPE
    ok = (n_win >= 10) & np.isfinite(shape)
    ti, di = np.where(ok)
    out = pd.DataFrame({
        "territory": np.asarray(ds["territory"].values).astype(str)[ti],
        "date": pd.DatetimeIndex(ds["date"].values[first:])[di],
        "r_mean": shape[ti, di] * scale[ti, di],
        "admissions_window": n_win[ti, di],
    })
    for q in quantiles:
        out[f"r_q{round(q * 100):02d}"] = stats.gamma.ppf(q, shape[ti, di], scale=scale[ti, di])
    return out


def nb_size(counts: np.ndarray, weekday: bool = False) -> float:
    """Negative-binomial size ``k`` of daily counts around their centred 7-day mean
    (method of moments; ``var = mu + mu^2 / k``), clipped to [2, 1000].

    With ``weekday=True`` the counts are first divided by their mean weekday profile (ratio to
    the centred 7-day mean, per day of the week): a 7-day window cancels the weekday pattern,
    so only the remaining noise should widen a window's R (SI-DEP positives fall by half or
    more on Sundays, which would otherwise read as huge overdispersion).
    """
    c = counts[np.isfinite(counts)]
    if len(c) < 21 or c.mean() < 1:
        return 1000.0
    mu = np.convolve(c, np.ones(7) / 7, mode="valid")
    y = c[3:-3]
    ok = mu > 0
    if weekday and ok.all():
        ratio = y / mu
        profile = np.array([ratio[d::7].mean() for d in range(7)])
        y = y / np.maximum(np.resize(profile, len(y)), 1e-3)
    inv_k = np.mean(((y[ok] - mu[ok]) ** 2 - mu[ok]) / mu[ok] ** 2)
    return float(np.clip(1 / inv_k if inv_k > 0 else 1000.0, 2.0, 1000.0))


def window_posterior(counts: np.ndarray, w: np.ndarray, tau: int = 7) -> tuple[float, float]:
    """Cori posterior of R on the last ``tau`` days of one daily series, widened for
    overdispersion beyond the weekday pattern: returns ``(mean, effective shape)`` (log SD ≈
    1 / sqrt(shape)).

    Parameters
    ----------
    counts:
        (D,) daily counts, no NaN in the last ``len(w) - 1 + tau`` days.
    """
    shape, scale = cori_posterior(counts[None, -(len(w) - 1 + tau + 30):], w, tau)
    a, b = float(shape[0, -1]), float(scale[0, -1])
    phi = 1.0 + counts[-tau:].mean() / nb_size(counts[-56:], weekday=True)
    return a * b, 1.0 + (a - 1.0) / phi
