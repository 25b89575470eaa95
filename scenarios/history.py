"""Learn from the cube's history how measures, mobility and stringency moved R(t).

Method (documented in ``scenarios/README.md``):

1. R^A(t), the reproduction number of admissions, per département by the Cori estimator
   (:mod:`scenarios.rt`), 7-day windows.
2. Covariates on the *admission* time axis: each measure indicator x(u) (infection date u) is
   convolved with the infection-to-admission delay f and averaged over the same 7-day window,
   so that log R^A(t) ≈ beta · X^A(t) + (slow confounders).
3. Weekly first differences, y = log R^A(t) - log R^A(t-7), regressed on the differences of
   X^A, pooled over départements (weighted by the Poisson precision of each log R^A), on a
   weekly grid ending the day before ``as_of``. Differencing removes territory levels and slow
   trends (immunity, seasons) that would otherwise be confounded with the measures.
4. Gaussian priors per coefficient, combined by precision weighting. National measures vary
   only between weeks, so the data precision is divided by the design effect of the residual
   correlation between départements of the same week (a cluster correction).

Only data dated before ``as_of`` is used (the cube given here is already cut at ``as_of``) and
only literature published before ``as_of`` is used as a prior; otherwise a generic prior.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from scenarios.measures import COVARIATES, department_covariates
from scenarios.params import EpiParameters
from scenarios.rt import backfill_start, cori_posterior

log = logging.getLogger(__name__)

MOBILITY_VARS = ("mobility_retail_recreation", "mobility_transit_stations", "mobility_workplaces")
TAU = 7
MIN_WINDOW_COUNT = 20  # admissions per 7-day window below which log R^A is too noisy to use


@dataclass(frozen=True)
class Prior:
    """Gaussian prior on one log-R coefficient, with its source and publication date."""

    mean: float
    sd: float
    source: str
    available_from: str  # ISO date: not used for an as_of before this (no hindsight)


GENERIC_PRIOR = Prior(
    -0.10,
    0.20,
    "generic weakly informative prior: a restriction lowers R modestly "
    "(90 % between -37 % and +25 %)",
    "1900-01-01",
)
# Log-R effect of each rung (cumulative coding, see scenarios.measures).
LITERATURE_PRIORS: dict[str, Prior] = {
    "lockdown": Prior(
        np.log(1 - 0.77) + 3 * 0.10,
        0.35,
        "Salje et al. 2020 (Science 369:208): R 2.90 -> 0.67 under lockdown 1 (-77 %), "
        "minus the generic prior means of the three lower rungs",
        "2020-07-10",
    ),
    "curfew_late": Prior(
        np.log(1 - 0.189), 0.042, "Paireau et al. 2023 (BMC Infect Dis 23:190): curfew 20/21 h "
        "-18.9 % (12.0-25.3)", "2023-12-31"
    ),
    "curfew_early": Prior(
        np.log((1 - 0.343) / (1 - 0.189)), 0.064, "Paireau et al. 2023: curfew 18/19 h -34.3 % "
        "(27.9-40.2), relative to the 20/21 h curfew", "2023-12-31"
    ),
    "school_closure": Prior(
        np.log(1 - 0.049), 0.015, "Paireau et al. 2023: school closure -4.9 % (2.0-7.8)",
        "2023-12-31"
    ),
}
# Elasticities of log R per percentage point of the index; vague priors centred on 0.
MOBILITY_PRIOR = Prior(0.0, 0.03, "vague prior on d log R / d mobility point", "1900-01-01")
STRINGENCY_PRIOR = Prior(0.0, 0.03, "vague prior on d log R / d stringency point", "1900-01-01")
MOBILITY_RESPONSE_PRIOR_SD = 40.0  # mobility points; vague


def prior_for(name: str, as_of: pd.Timestamp, policy: str = "as_of") -> Prior:
    """Prior of a covariate: the literature value if published before ``as_of`` (or always when
    ``policy == "latest"``), else the generic prior."""
    p = LITERATURE_PRIORS.get(name)
    if p is not None and (policy == "latest" or pd.Timestamp(p.available_from) < as_of):
        return p
    return GENERIC_PRIOR


@dataclass
class EffectModel:
    """Coefficients learned from history, with their uncertainty (all on the log-R scale).

    Attributes
    ----------
    covariates:
        Names (C,), see :data:`scenarios.measures.COVARIATES`.
    beta_mean, beta_cov:
        Posterior mean (C,) and covariance (C, C) of the measure effects.
    data_weight:
        Per covariate, share of the posterior precision coming from data (0 = prior only).
    mobility_elasticity, stringency_elasticity:
        (mean, sd) of d log R per index point.
    mobility_response_mean, mobility_response_cov:
        Effect of each covariate on the transit-stations mobility index (points), (C,), (C, C).
    sigma_rw:
        Daily SD of the random walk of log R not explained by measures, per territory level
        (``department``, ``region``, ``country``).
    """

    as_of: str
    covariates: tuple[str, ...]
    beta_mean: np.ndarray
    beta_cov: np.ndarray
    data_weight: np.ndarray
    priors: dict[str, Prior]
    mobility_elasticity: tuple[float, float]
    stringency_elasticity: tuple[float, float]
    mobility_response_mean: np.ndarray
    mobility_response_cov: np.ndarray
    sigma_rw: dict[str, float]
    n_obs: int
    n_weeks: int
    design_effect: float
    info: dict[str, Any] = field(default_factory=dict)

    def sample_beta(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw measure effects, shape (n, C).

        Every covariate is a restriction, which cannot raise transmission: draws above 0 are
        set to 0 (a censored posterior). Without this, a weakly identified rung (e.g. the 18 h
        curfew before any was in force) can come out as "curfews increase admissions", which
        is an artefact of collinearity, not evidence.
        """
        draws = rng.multivariate_normal(self.beta_mean, self.beta_cov, size=n, method="cholesky")
        return np.minimum(draws, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: effect per covariate as a % change of R with a 90 % interval."""
        sd = np.sqrt(np.diag(self.beta_cov))
        # What the engine actually uses: draws censored at 0 (see sample_beta).
        used = np.exp(self.sample_beta(np.random.default_rng(0), 4000)).mean(axis=0) - 1
        effects = {}
        for i, c in enumerate(self.covariates):
            m = self.beta_mean[i]
            effects[c] = {
                "log_r_mean": round(float(m), 4),
                "log_r_sd": round(float(sd[i]), 4),
                "r_change_pct": round(float(100 * (np.exp(m) - 1)), 1),
                "r_change_pct_90": [
                    round(float(100 * (np.exp(m - 1.645 * sd[i]) - 1)), 1),
                    round(float(100 * (np.exp(m + 1.645 * sd[i]) - 1)), 1),
                ],
                "r_change_pct_used": round(float(100 * used[i]), 1),
                "data_weight": round(float(self.data_weight[i]), 3),
                "prior": self.priors[c].source,
            }
        return {
            "as_of": self.as_of,
            "method": "weekly first differences of log R of admissions on measure indicators, "
            "pooled over départements, Gaussian priors, cluster (week) design effect",
            "effects": effects,
            "mobility_elasticity_per_point": [round(float(v), 5) for v in self.mobility_elasticity],
            "stringency_elasticity_per_point": [
                round(float(v), 5) for v in self.stringency_elasticity
            ],
            "mobility_transit_response_points": {
                c: round(float(v), 1)
                for c, v in zip(self.covariates, self.mobility_response_mean, strict=True)
            },
            "sigma_rw_per_day": {k: round(float(v), 4) for k, v in self.sigma_rw.items()},
            "n_obs": self.n_obs,
            "n_weeks": self.n_weeks,
            "design_effect": round(self.design_effect, 2),
        }


def windowed_convolution(x: np.ndarray, f: np.ndarray | None, tau: int) -> np.ndarray:
    """Convolve ``x`` (..., D) along the last axis with the delay ``f`` (causal) and take the
    trailing ``tau``-day mean. NaN in the first days (not enough history)."""
    y = x
    if f is not None:
        y = np.zeros_like(x, dtype=float)
        for k, fk in enumerate(f):
            if fk > 0:
                y[..., k:] += fk * x[..., : x.shape[-1] - k]
        y[..., : len(f) - 1] = np.nan
    c = np.cumsum(np.nan_to_num(y), axis=-1)
    out = np.full_like(y, np.nan, dtype=float)
    out[..., tau - 1 :] = (c[..., tau - 1 :] - np.concatenate(
        [np.zeros(c.shape[:-1] + (1,)), c[..., :-tau]], axis=-1)) / tau
    nan_any = np.isnan(y).astype(float)
    cn = np.cumsum(nan_any, axis=-1)
    n_nan = np.full_like(cn, np.nan)
    n_nan[..., tau - 1 :] = cn[..., tau - 1 :] - np.concatenate(
        [np.zeros(cn.shape[:-1] + (1,)), cn[..., :-tau]], axis=-1)
    out[~(n_nan == 0)] = np.nan
    return out


def _gaussian_posterior(
    X: np.ndarray, y: np.ndarray, wts: np.ndarray, clusters: np.ndarray, priors: list[Prior]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """Weighted least squares with Gaussian priors and a cluster design effect.

    Returns
    -------
    mean (P,), cov (P, P), data_weight (P,), design effect, residuals (N,)
    """
    m0 = np.array([p.mean for p in priors])
    p0 = np.diag([1 / p.sd**2 for p in priors])
    # Pass 1: residual variance with unit design effect.
    xtwx = X.T @ (X * wts[:, None])
    xtwy = X.T @ (wts * y)
    beta = np.linalg.solve(xtwx + p0 * 1e-6 + p0, xtwy + p0 @ m0)
    resid = y - X @ beta
    sigma2 = float(np.sum(wts * resid**2) / max(len(y) - X.shape[1], 1))
    # Design effect: residual correlation between units of the same cluster (week).
    deff = 1.0
    if len(np.unique(clusters)) > 2:
        df = pd.DataFrame({"c": clusters, "r": resid * np.sqrt(wts)})
        g = df.groupby("c")["r"]
        sizes = g.size().to_numpy(float)
        means = g.mean().to_numpy()
        m_bar = float(sizes.mean())
        var_between = float(np.var(means, ddof=1))
        var_total = float(np.var(df["r"], ddof=1))
        rho = (var_between - var_total / m_bar) / max(var_total, 1e-12)
        rho = min(max(rho, 0.0), 1.0)
        deff = 1.0 + (m_bar - 1.0) * rho
    data_prec = xtwx / (sigma2 * deff)
    post_prec = data_prec + p0
    cov = np.linalg.inv(post_prec)
    mean = cov @ (xtwy / (sigma2 * deff) + p0 @ m0)
    dw = 1.0 - np.diag(p0) * np.diag(cov)
    resid = y - X @ mean
    return mean, cov, np.clip(dw, 0, 1), deff, resid


def fit_effects(
    daily: xr.Dataset,
    measures: pd.DataFrame,
    as_of: pd.Timestamp,
    params: EpiParameters | None = None,
    prior_policy: str = "as_of",
) -> EffectModel:
    """Estimate the effects of measures, mobility and stringency on R from history.

    Parameters
    ----------
    daily:
        Daily cube (territory, date) with at least ``inc_hosp``; only dates < ``as_of`` are used.
    measures:
        Measures table (:func:`scenarios.measures.load_measures`).
    as_of:
        First day not known.
    params:
        Epidemiological parameters (generation interval, delay).
    prior_policy:
        ``"as_of"`` (default): literature priors only if published before ``as_of``;
        ``"latest"``: always (hindsight; for exploration only).

    Returns
    -------
    EffectModel
    """
    params = params or EpiParameters()
    w = params.generation_interval()
    f = params.infection_to_admission()
    hist = _admission_history(daily, measures, as_of, w, f)
    y, X, wts, clus, dmob, dstr = _weekly_differences(hist)
    priors = [prior_for(c, as_of, prior_policy) for c in COVARIATES]
    if len(y) < 10:
        raise ValueError(f"too few usable weeks of R before {as_of.date()} to learn effects")
    beta, cov, dw, deff, _resid = _gaussian_posterior(X, y, wts, clus, priors)
    # Elasticities (univariate, on the residual after measures would double count; use raw y).
    mob_el = _elasticity(dmob, y, wts, clus, MOBILITY_PRIOR)
    str_el = _elasticity(dstr, y, wts, clus, STRINGENCY_PRIOR)
    mr_mean, mr_cov = _mobility_response(hist.sub, measures, as_of)
    sigma_rw = _drift_by_level(hist, beta, w)
    model = EffectModel(
        as_of=str(as_of.date()),
        covariates=COVARIATES,
        beta_mean=beta,
        beta_cov=cov,
        data_weight=dw,
        priors=dict(zip(COVARIATES, priors, strict=True)),
        mobility_elasticity=mob_el,
        stringency_elasticity=str_el,
        mobility_response_mean=mr_mean,
        mobility_response_cov=mr_cov,
        sigma_rw=sigma_rw,
        n_obs=len(y),
        n_weeks=len(np.unique(clus)),
        design_effect=deff,
    )
    log.debug("effects as of %s: %s", as_of.date(), model.to_dict()["effects"])
    return model


@dataclass(frozen=True)
class _AdmissionHistory:
    """Départements' admissions, log R^A and covariates on the admission axis.

    Attributes
    ----------
    sub:
        The cube at the départements (territory T, date), dates before ``as_of``.
    inc:
        (T, D) admissions/day from the first published day (NaN as 0).
    log_r, n_win:
        (T, D) log R^A of the 7-day window ending each day (NaN under
        :data:`MIN_WINDOW_COUNT` admissions) and the admissions in that window.
    xa:
        (C, T, D) measure covariates on the admission axis (delay-convolved, 7-day mean).
    mob_a, str_a:
        (T, D) mobility and stringency indices on the admission axis (``str_a`` None without
        stringency in the cube).
    """

    sub: xr.Dataset
    inc: np.ndarray
    log_r: np.ndarray
    n_win: np.ndarray
    xa: np.ndarray
    mob_a: np.ndarray
    str_a: np.ndarray | None


def _admission_history(daily: xr.Dataset, measures: pd.DataFrame, as_of: pd.Timestamp,
                       w: np.ndarray, f: np.ndarray) -> _AdmissionHistory:
    """Steps 1 and 2 of the module docstring, on the départements' history before ``as_of``."""
    daily = daily.sel(date=daily["date"] < np.datetime64(as_of))
    lvl = daily["territory_level"].values if "territory_level" in daily.coords else None
    deps = [
        str(t) for t, lv in zip(daily["territory"].values, lvl, strict=True) if lv == "department"
    ] if lvl is not None else [str(t) for t in daily["territory"].values]
    sub = daily.sel(territory=deps)
    inc = sub["inc_hosp"].values.astype(float)
    published = np.where(np.isfinite(inc).any(axis=0))[0]
    if len(published) < 4 * TAU:
        raise ValueError(f"too little admission history before {as_of.date()} to learn effects")
    first = int(published[0])
    dates = pd.DatetimeIndex(sub["date"].values[first:])
    inc = np.nan_to_num(inc[:, first:])
    inc_ext, n_back = backfill_start(inc)
    shape, scale = cori_posterior(inc_ext, w, TAU)
    shape, scale = shape[:, n_back:], scale[:, n_back:]
    n_win = shape - 1.0
    log_r = np.log(shape * scale)
    log_r[n_win < MIN_WINDOW_COUNT] = np.nan

    # Covariates on infection dates, from max_delay days before the first admission date.
    lead = len(f) - 1
    cov_dates = pd.date_range(dates[0] - pd.Timedelta(days=lead), dates[-1])
    x = department_covariates(measures, deps, cov_dates, as_of=as_of)  # (T, D+lead, C)
    xa = windowed_convolution(np.moveaxis(x, -1, 0), f, TAU)[..., lead:]  # (C, T, D)

    mob = _mobility_index(sub)[:, first:]
    mob_full = np.concatenate([np.full((len(deps), lead), np.nan), mob], axis=1)
    mob_a = windowed_convolution(mob_full, f, TAU)[:, lead:]
    strg = sub["stringency_index"].values[:, first:] if "stringency_index" in sub else None
    str_a = (
        windowed_convolution(np.concatenate([np.zeros((len(deps), lead)), strg], 1), f, TAU)[
            :, lead:
        ]
        if strg is not None
        else None
    )
    return _AdmissionHistory(sub, inc, log_r, n_win, xa, mob_a, str_a)


def _weekly_differences(hist: _AdmissionHistory) -> tuple[np.ndarray, ...]:
    """Step 3's rows: weekly differences on a grid ending the day before ``as_of``, pooled
    over départements: ``y`` (N,) of log R^A, ``X`` (N, C) of the covariates, weights ``wts``
    (Poisson precision), week ``clus``, and differences of mobility and stringency (N,)."""
    log_r, n_win, xa, mob_a, str_a = hist.log_r, hist.n_win, hist.xa, hist.mob_a, hist.str_a
    last = log_r.shape[1] - 1
    grid = np.arange(last, TAU + 7, -7)[::-1]
    rows_y, rows_x, rows_w, rows_c, rows_mob, rows_str = [], [], [], [], [], []
    for t in grid:
        y = log_r[:, t] - log_r[:, t - 7]
        dx = (xa[:, :, t] - xa[:, :, t - 7]).T
        var = 1 / np.maximum(n_win[:, t], 1) + 1 / np.maximum(n_win[:, t - 7], 1)
        ok = np.isfinite(y) & np.isfinite(dx).all(axis=1)
        rows_y.append(y[ok])
        rows_x.append(dx[ok])
        rows_w.append(1 / (0.01 + var[ok]))
        rows_c.append(np.full(ok.sum(), t))
        rows_mob.append((mob_a[:, t] - mob_a[:, t - 7])[ok])
        rows_str.append(
            (str_a[:, t] - str_a[:, t - 7])[ok] if str_a is not None else np.full(ok.sum(), np.nan)
        )
    return tuple(np.concatenate(rows)
                 for rows in (rows_y, rows_x, rows_w, rows_c, rows_mob, rows_str))


def _elasticity(dz: np.ndarray, y: np.ndarray, wts: np.ndarray, clus: np.ndarray,
                prior: Prior) -> tuple[float, float]:
    """(mean, sd) of d log R per index point: univariate regression of the weekly differences
    ``y`` on those of the index ``dz`` (the prior when fewer than 10 are usable)."""
    ok = np.isfinite(dz)
    if ok.sum() < 10:
        return prior.mean, prior.sd
    m, c, _, _, _ = _gaussian_posterior(dz[ok, None], y[ok], wts[ok], clus[ok], [prior])
    return float(m[0]), float(np.sqrt(c[0, 0]))


def _mobility_response(sub: xr.Dataset, measures: pd.DataFrame,
                       as_of: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """Mean (C,) and covariance (C, C) of the transit mobility response to each covariate,
    in points.

    Same-day weekly differences of 7-day means over the whole mobility record (from
    2020-02-15, so the March 2020 drop is in), not only the admission period.
    """
    deps = [str(t) for t in sub["territory"].values]
    all_dates = pd.DatetimeIndex(sub["date"].values)
    if "mobility_transit_stations" in sub:
        transit = sub["mobility_transit_stations"].values.astype(float)
    else:
        transit = np.full((len(deps), len(all_dates)), np.nan)
    xm = department_covariates(measures, deps, all_dates, as_of=as_of)
    tr7 = windowed_convolution(transit, None, TAU)
    xs7 = windowed_convolution(np.moveaxis(xm, -1, 0), None, TAU)
    my, mx = [], []
    for t in np.arange(len(all_dates) - 1, TAU + 7, -7):
        dy = tr7[:, t] - tr7[:, t - 7]
        dx = (xs7[:, :, t] - xs7[:, :, t - 7]).T
        ok = np.isfinite(dy) & np.isfinite(dx).all(axis=1)
        my.append(dy[ok])
        mx.append(dx[ok])
    my_a, mx_a = np.concatenate(my), np.concatenate(mx)
    mprior = [Prior(0.0, MOBILITY_RESPONSE_PRIOR_SD, "vague", "1900-01-01")] * len(COVARIATES)
    if len(my_a) < 10:
        return (np.zeros(len(COVARIATES)),
                np.eye(len(COVARIATES)) * MOBILITY_RESPONSE_PRIOR_SD**2)
    clus_m = np.concatenate([np.full(len(a), i) for i, a in enumerate(my)])
    mr_mean, mr_cov, _, _, _ = _gaussian_posterior(mx_a, my_a, np.ones(len(my_a)), clus_m, mprior)
    return mr_mean, mr_cov


def _drift_by_level(hist: _AdmissionHistory, beta: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """Unexplained drift of log R per territory level (:func:`_drift`): aggregates average out
    local noise, so France drifts less than a département (measured on the same history)."""
    sub, inc, xa = hist.sub, hist.inc, hist.xa
    n_deps = sub.sizes["territory"]
    sigma_rw = {"department": _drift(hist.log_r, hist.n_win, xa, beta)}
    par = np.array([str(v) for v in sub["territory_parent"].values]) if (
        "territory_parent" in sub.coords) else np.array(["FR"] * n_deps)
    pop = np.nan_to_num(sub["population"].values.astype(float)) if (
        "population" in sub.coords) else np.ones(n_deps)
    pop = np.where(pop > 0, pop, 1.0)  # a missing population must not poison the weights
    groups = {"region": [np.where(par == r)[0] for r in np.unique(par)],
              "country": [np.arange(n_deps)]}
    for lv, idx_list in groups.items():
        agg_inc = np.stack([inc[ix].sum(axis=0) for ix in idx_list])
        agg_x = np.stack([np.tensordot(pop[ix] / pop[ix].sum(), xa[:, ix], axes=([0], [1]))
                          for ix in idx_list], axis=1)  # (C, G, D)
        a_ext, nb = backfill_start(agg_inc)
        sh, sc = cori_posterior(a_ext, w, TAU)
        sh, sc = sh[:, nb:], sc[:, nb:]
        sigma_rw[lv] = _drift(np.log(sh * sc), sh - 1.0, agg_x, beta)
    log.debug("drift SD of log R per day: %s", sigma_rw)
    return sigma_rw


def _drift(log_r: np.ndarray, n_win: np.ndarray, xa: np.ndarray, beta: np.ndarray) -> float:
    """Daily SD of the random walk of log R not explained by measures.

    Uses 28-day differences (the horizon scale, so that short-lived, mean-reverting wiggles are
    not compounded as if persistent), net of the measures' predicted change and of the Poisson
    noise of both windows, from windows of at least 100 admissions. Capped at 0.06/day.

    Parameters
    ----------
    log_r, n_win:
        (T, D) log R^A and admissions per window.
    xa:
        (C, T, D) covariates on the admission axis.
    beta:
        (C,) measure effects.
    """
    last = log_r.shape[1] - 1
    rows = []
    for t in np.arange(last, 28 + TAU, -7):
        y28 = log_r[:, t] - log_r[:, t - 28]
        dx28 = (xa[:, :, t] - xa[:, :, t - 28]).T
        n28 = np.minimum(n_win[:, t], n_win[:, t - 28])
        ok = np.isfinite(y28) & np.isfinite(dx28).all(axis=1) & (n28 >= 100)
        pois = 1 / n_win[ok, t] + 1 / n_win[ok, t - 28]
        rows.append(np.c_[y28[ok] - dx28[ok] @ beta, pois])
    arr = np.concatenate(rows) if rows else np.zeros((0, 2))
    if len(arr) < 10:
        return 0.04  # no history long enough: a middle value of what French data show
    r = arr[:, 0]
    mad = float(np.median(np.abs(r - np.median(r)))) * 1.4826
    var = max(mad**2 - float(np.median(arr[:, 1])), 0.0)
    return float(min(np.sqrt(var / 28.0), 0.06))


def _mobility_index(ds: xr.Dataset) -> np.ndarray:
    """Mean of retail/recreation, transit and workplace mobility (% vs baseline), (T, D)."""
    arrs = [ds[v].values.astype(float) for v in MOBILITY_VARS if v in ds]
    if not arrs:
        return np.full((ds.sizes["territory"], ds.sizes["date"]), np.nan)
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(np.stack(arrs), axis=0)


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)
