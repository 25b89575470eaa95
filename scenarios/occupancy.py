"""Beds occupied: projected admissions through length-of-stay survival curves (stage 5 of
:mod:`scenarios.engine`).

Occupancy on a day is the sum of past and projected admissions still in bed (gamma stay
lengths, :func:`scenarios.params.los_survival`), with a scale factor on the stay lengths fitted
to the stocks and flows of the last 60 days and drawn per sample, plus the gap between the
observed and the modelled stock on the day before ``as_of``, decaying with the mean stay. ICU
admissions are a share of admissions (Beta posterior of ``inc_icu / inc_hosp`` over the last
28 days).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from scenarios.params import EpiParameters, los_survival

LOS_GRID = np.exp(np.linspace(np.log(0.5), np.log(2.0), 29))
FINE_GRID = np.exp(np.linspace(np.log(0.25), np.log(4.0), 225))  # 1.2 % steps, holds LOS_GRID
COARSE_IN_FINE = np.array([int(np.argmin(np.abs(np.log(FINE_GRID / c)))) for c in LOS_GRID])
#: Survival curves of one bed type: stay-length factors (G,) -> curves (G, max_los + 1).
Survival = Callable[[np.ndarray], np.ndarray]


def fit_los_factor(adm: np.ndarray, stock: np.ndarray, surv_for: Survival,
                   window: int = 60) -> float:
    """Scale factor on stay lengths that best reproduces an occupancy stock from admissions.

    Parameters
    ----------
    adm, stock : numpy.ndarray
        (D,) daily admissions and beds occupied (NaN allowed in ``stock``).
    surv_for : callable
        Factor array (G,) -> survival curves (G, K).
    window : int
        Number of final days compared (relative squared error).

    Returns
    -------
    float
        Factor in [0.5, 2] (grid :data:`LOS_GRID`); 1.0 when the stock is missing or too small.
    """
    tail = stock[-window:]
    ok = np.isfinite(tail) & (tail > 0)
    if ok.sum() < 14 or np.nanmean(tail) < 5:
        return 1.0
    surv = surv_for(LOS_GRID)  # (G, K)
    k = surv.shape[1]
    padded = np.concatenate([np.zeros(k - 1), adm])[-(window + k - 1):]
    if len(padded) < window + k - 1:
        padded = np.concatenate([np.zeros(window + k - 1 - len(padded)), padded])
    win = np.lib.stride_tricks.sliding_window_view(padded, k)  # (window, K), oldest first
    mod = win[:, ::-1] @ surv.T  # (window, G): sum_k adm[t-k] surv[k]
    n = len(tail)
    err = np.sum((((mod[-n:] - tail[:, None]) / np.where(ok, tail, 1.0)[:, None]) ** 2)[ok],
                 axis=0)
    return float(LOS_GRID[int(np.argmin(err))])


def hospital_survival(p: EpiParameters) -> Survival:
    """Survival in any hospital bed: a mixture of stays with and without critical care."""

    def surv(c: float | np.ndarray) -> np.ndarray:
        return (p.p_icu_path * los_survival(p.los_ward_icu_path_median * np.asarray(c),
                                            p.los_shape, p.max_los)
                + (1 - p.p_icu_path) * los_survival(p.los_ward_median * np.asarray(c),
                                                    p.los_shape, p.max_los))

    return surv


def icu_survival(p: EpiParameters) -> Survival:
    """Survival in a critical-care bed."""

    def surv(c: float | np.ndarray) -> np.ndarray:
        return los_survival(p.los_icu_median * np.asarray(c), p.los_shape, p.max_los)

    return surv


def occupancy(history: xr.Dataset, admissions: xr.DataArray, params: EpiParameters,
              rng_los: np.random.Generator, rng_icu: np.random.Generator) -> xr.Dataset:
    """Stage 5: hospital and ICU beds occupied on each projected day.

    Parameters
    ----------
    history : xarray.Dataset
        (territory, date) history before ``as_of``: ``inc_hosp`` and, when present,
        ``inc_icu`` (admissions/day), ``hosp`` and ``icu`` (beds occupied).
    admissions : xarray.DataArray
        (territory, sample, date) expected hospital admissions per projected day.
    params : EpiParameters
        Stay lengths, their sampling SD (``los_sd_log``) and whether to fit them (``los_fit``).
    rng_los, rng_icu : numpy.random.Generator
        Streams of the stay-length factor (one per sample) and of the ICU share (one per
        territory and sample).

    Returns
    -------
    xarray.Dataset
        ``hosp`` and ``icu`` (territory, sample, date), beds occupied; ``hosp_observed_last``
        and ``icu_observed_last`` (territory,), the last observed stock within 14 days of
        ``as_of`` (NaN when unknown).
    """
    adm = admissions.transpose("territory", "sample", "date")
    n_s = adm.sizes["sample"]
    adm_hist = np.nan_to_num(history["inc_hosp"].values.astype(float))
    icu_hist = np.nan_to_num(history["inc_icu"].values.astype(float)) \
        if "inc_icu" in history else np.zeros_like(adm_hist)
    fac_draw = np.exp(params.los_sd_log * rng_los.standard_normal(n_s))
    p_icu = icu_share(adm_hist, icu_hist, rng_icu, n_s)
    out = xr.Dataset(coords=adm.coords)
    for ind, adm_h, adm_f, surv_for in (
        ("hosp", adm_hist, adm.values, hospital_survival(params)),
        ("icu", icu_hist, adm.values * p_icu[:, :, None], icu_survival(params)),
    ):
        stock = history[ind].values.astype(float) if ind in history \
            else np.full_like(adm_hist, np.nan)
        beds, last = beds_occupied(adm_h, adm_f, stock, surv_for, fac_draw, params)
        out[ind] = (adm.dims, beds, {"units": "beds occupied"})
        out[f"{ind}_observed_last"] = ("territory", last, {"units": "beds occupied"})
    return out


def icu_share(adm_hist: np.ndarray, icu_hist: np.ndarray, rng: np.random.Generator,
              n: int) -> np.ndarray:
    """(T, n) draws of the share of admissions going to ICU: Beta posterior of the ICU and
    hospital admissions (T, D) of the last 28 days."""
    last28_h = adm_hist[:, -28:].sum(axis=1)
    last28_i = icu_hist[:, -28:].sum(axis=1)
    return rng.beta(1 + last28_i[:, None], 1 + np.maximum(last28_h - last28_i, 0)[:, None],
                    size=(len(adm_hist), n))


def beds_occupied(adm_hist: np.ndarray, adm_future: np.ndarray, stock: np.ndarray,
                  surv_for: Survival, fac_draw: np.ndarray,
                  params: EpiParameters) -> tuple[np.ndarray, np.ndarray]:
    """Beds of one type (T, S, H) and the last observed stock (T,).

    Parameters
    ----------
    adm_hist, stock : numpy.ndarray
        (T, D) admissions and beds occupied before ``as_of`` (NaN allowed in ``stock``).
    adm_future : numpy.ndarray
        (T, S, H) projected admissions to this bed type.
    surv_for : callable
        Survival curves of the bed type (:func:`hospital_survival`, :func:`icu_survival`).
    fac_draw : numpy.ndarray
        (S,) factor on the stay lengths per sample (times the fitted factor).
    """
    obs_last = _last_valid(stock)
    out = np.zeros(adm_future.shape)
    # Survival curves computed once on a fine grid of stay-length factors (1.2 % steps)
    # and looked up, instead of evaluating gamma tails per territory and sample.
    fine_sv = surv_for(FINE_GRID)  # (F, L+1)
    coarse_sv = fine_sv[COARSE_IN_FINE]

    def coarse(_c: np.ndarray, _sv: np.ndarray = coarse_sv) -> np.ndarray:
        return _sv

    for i in range(len(out)):
        c0 = fit_los_factor(adm_hist[i], stock[i], coarse) if params.los_fit else 1.0
        out[i] = _territory_beds(adm_hist[i], adm_future[i], obs_last[i], c0 * fac_draw,
                                 fine_sv, params.max_los)
    return out, obs_last


def _territory_beds(adm_hist: np.ndarray, adm_future: np.ndarray, obs_last: float,
                    fac: np.ndarray, fine_sv: np.ndarray, max_los: int) -> np.ndarray:
    """(S, H) beds of one territory: admissions (D,) then (S, H) convolved with the survival
    curve of each sample's stay-length factor ``fac`` (S,), plus the decaying gap between the
    observed stock ``obs_last`` and the modelled one on the day before ``as_of``."""
    n_s, n_h = adm_future.shape
    L = max_los
    j = np.clip(np.searchsorted(np.log(FINE_GRID), np.log(fac)), 0, len(FINE_GRID) - 1)
    sv = fine_sv[j]  # (S, L+1)
    hist_tail = np.broadcast_to(adm_hist[-L:], (n_s, L))
    seq = np.concatenate([hist_tail, adm_future], axis=1)  # (S, L + H)
    # Occupancy on the last history day and on each projected day.
    win = np.lib.stride_tricks.sliding_window_view(seq, L + 1, axis=1)  # (S, H, L+1)
    mod = np.einsum("shl,sl->sh", win, sv[:, ::-1])
    mod_last = np.einsum("sl,sl->s", hist_tail[:, ::-1], sv[:, :L])
    gap = (obs_last - mod_last) if np.isfinite(obs_last) else np.zeros(n_s)
    mean_los = (sv.sum(axis=1))  # days
    decay = np.exp(-np.arange(1, n_h + 1)[None, :] / mean_los[:, None])
    return np.maximum(mod + gap[:, None] * decay, 0.0)


def _last_valid(a: np.ndarray, max_back: int = 14) -> np.ndarray:
    """Last finite value of each row within ``max_back`` days of the end (NaN otherwise)."""
    out = np.full(a.shape[0], np.nan)
    for i, row in enumerate(a):
        idx = np.where(np.isfinite(row[-max_back:]))[0]
        if len(idx):
            out[i] = row[-max_back:][idx[-1]]
    return out
