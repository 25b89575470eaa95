"""Scenario engine: R(t) now, interventions, renewal projection, beds, capacity.

Pipeline for one scenario (all territories and samples at once, numpy arrays shaped
``(territory T, sample S, day H)``):

1. R now: Cori posterior over the 7 days before ``as_of`` from daily cases where they exist
   (France, régions; a département takes its région's case R with its own, shrunk, deviation
   measured on admissions: :mod:`scenarios.rnow`), from admissions otherwise
   (:mod:`scenarios.rt`), one draw per sample.
2. Multiplier of R on infection dates: ``exp(beta · x(u) + custom(u))`` where ``x`` are the
   measure covariates (history from the measures table, status quo carried forward, then the
   scenario's interventions) and ``beta`` are draws of the effects learned from history
   (:mod:`scenarios.history`). Transferred to admission dates through the
   infection-to-admission delay and normalised on the 7-day window behind R^A now, so that a
   curfew decided 3 days before ``as_of`` — already in force but not yet visible in admissions —
   still lowers the status quo. Vaccination and variant levers (:mod:`scenarios.levers`) add
   to that multiplier; a variant also raises the R cap.
3. An unexplained random walk of log R (SD learned from history) widens the fan with time.
4. Renewal equation on admissions: ``A_t = R^A_t sum_s w_s A_{t-s}``; negative-binomial
   observation noise for daily counts (dispersion from the last 8 weeks).
5. Occupancy: admissions convolved with length-of-stay survival curves (scale fitted to the
   stocks and flows of the last 60 days) plus the decaying gap between observed and modelled
   stock on the day before ``as_of``; ICU admissions = share of admissions going to ICU.
6. Emergency visits (SurSaUD rate per 100,000 ED visits) by the ratio of the rate to
   admissions per capita over the last 4 complete weeks in the région; transit mobility index
   from the learned response of mobility to measures.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from scenarios.history import EffectModel, fit_effects
from scenarios.levers import vaccination_log_r, variant_log_r
from scenarios.measures import (
    COVARIATES,
    LEVELS,
    department_covariates,
    load_measures,
    measure_covariate,
    territory_covariates,
)
from scenarios.params import EpiParameters, los_survival
from scenarios.rnow import estimate_r_now
from scenarios.rt import cori_posterior, nb_size
from scenarios.schema import (
    Intervention,
    Scenario,
    ScenarioValidationError,
    load_definition,
    resolve,
)

log = logging.getLogger(__name__)

QUANTILES: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
INDICATORS: tuple[str, ...] = ("inc_hosp", "hosp", "icu", "er_visits_covid_rate",
                               "mobility_transit_stations")
OCCUPANCY = ("hosp", "icu")
LOS_GRID = np.exp(np.linspace(np.log(0.5), np.log(2.0), 29))
FINE_GRID = np.exp(np.linspace(np.log(0.25), np.log(4.0), 225))  # 1.2 % steps, holds LOS_GRID
COARSE_IN_FINE = np.array([int(np.argmin(np.abs(np.log(FINE_GRID / c)))) for c in LOS_GRID])
_EFFECT_CACHE: OrderedDict[tuple, EffectModel] = OrderedDict()


@dataclass
class Projection:
    """Sampled trajectories of one scenario.

    Attributes
    ----------
    territories:
        Codes (T,).
    dates:
        Projection dates (H,), from ``as_of``.
    samples:
        Indicator -> array (T, S, H). ``inc_hosp`` includes observation noise; ``inc_hosp_mean``
        is the expected value (used for summaries and monotonicity).
    capacity:
        Indicator -> array (T,) of beds (NaN = none configured).
    r_now:
        (T, S) draws of R^A on the window before ``as_of``.
    observed_last:
        Indicator -> (T,) last observed stock (NaN when unknown).
    skipped:
        Territories of a group selector left out for lack of recent admissions.
    r_now_admissions:
        (T, S) draws of R^A now before the case adjustment (equal to ``r_now`` where the
        admissions basis is kept).
    r_basis:
        Per territory, what R now was estimated from (:meth:`scenarios.rnow.RNow.info`).
    levers:
        What the vaccination and variant levers used (coverage and share now, priors).
    """

    territories: list[str]
    dates: pd.DatetimeIndex
    samples: dict[str, np.ndarray]
    capacity: dict[str, np.ndarray]
    r_now: np.ndarray
    observed_last: dict[str, np.ndarray]
    skipped: list[str]
    r_now_admissions: np.ndarray | None = None
    r_basis: list[dict[str, Any]] = field(default_factory=list)
    levers: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers
def _ramp(dates: pd.DatetimeIndex, iv: Intervention, horizon_end: pd.Timestamp) -> np.ndarray:
    """Intensity 0..1 of an intervention on each date: linear ramp over ``ramp_days`` from the
    start, 1 until the (inclusive) end, 0 after."""
    end = iv.end if iv.end is not None else horizon_end
    d = (dates - iv.start).days.to_numpy().astype(float)
    val = np.clip((d + 1) / (iv.ramp_days + 1), 0.0, 1.0) if iv.ramp_days > 0 else (
        d >= 0).astype(float)
    val[(d < 0) | (dates > end)] = 0.0
    return val


def _coverage(iv: Intervention, code: str, level: str, deps: list[str],
              parents: dict[str, str], pops: dict[str, float]) -> float:
    """Share of a territory's population an intervention applies to (1 for a département
    inside the intervention's territories, a population share for a région or France)."""
    if not iv.territories:
        return 1.0

    def dep_in(d: str) -> bool:
        for t in iv.territories:  # type: ignore[union-attr]
            if t in (d, "FR", parents.get(d)) or t == "departments" or (
                t == "metro_departments" and not d.startswith("97")
            ):
                return True
        return False

    if level == "department":
        return 1.0 if dep_in(code) else 0.0
    if code in iv.territories:
        return 1.0
    members = deps if level == "country" else [d for d in deps if parents.get(d) == code]
    w = np.nan_to_num(np.array([pops.get(d, 0.0) for d in members], dtype=float))
    if not members or w.sum() <= 0:
        return 0.0
    return float(sum(wi for d, wi in zip(members, w, strict=True) if dep_in(d)) / w.sum())


def _select_territories(ds: xr.Dataset, wanted: tuple[str, ...],
                        source: str = "<definition>") -> list[str]:
    codes = [str(t) for t in ds["territory"].values]
    level = [str(v) for v in ds["territory_level"].values]
    groups = ("departments", "metro_departments", "regions")
    unknown = [w for w in wanted if w not in groups and w not in codes]
    if unknown:
        raise ScenarioValidationError([f"territories: not in the cube: {unknown}"], source)
    out: list[str] = []
    for w in wanted:
        if w == "departments":
            out += [c for c, lv in zip(codes, level, strict=True) if lv == "department"]
        elif w == "metro_departments":
            out += [c for c, lv in zip(codes, level, strict=True)
                    if lv == "department" and not c.startswith("97")]
        elif w == "regions":
            out += [c for c, lv in zip(codes, level, strict=True) if lv == "region"]
        else:
            out.append(w)
    return list(dict.fromkeys(out))


def _last_valid(a: np.ndarray, max_back: int = 14) -> np.ndarray:
    """Last finite value of each row within ``max_back`` days of the end (NaN otherwise)."""
    out = np.full(a.shape[0], np.nan)
    for i, row in enumerate(a):
        idx = np.where(np.isfinite(row[-max_back:]))[0]
        if len(idx):
            out[i] = row[-max_back:][idx[-1]]
    return out


def fit_los_factor(adm: np.ndarray, stock: np.ndarray, surv_for, window: int = 60) -> float:
    """Scale factor on stay lengths that best reproduces an occupancy stock from admissions.

    Parameters
    ----------
    adm, stock:
        (D,) daily admissions and beds occupied (NaN allowed in ``stock``).
    surv_for:
        Callable factor array (G,) -> survival curves (G, K).
    window:
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


def _r_now(scenario: Scenario, daily: xr.Dataset, terrs: list[str], level: list[str],
           parent: list[str], w: np.ndarray, r_now_adm: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draws (T, S) of R now and, per territory, what they came from.

    ``rt_basis: admissions`` without pooling keeps the admissions draws ``r_now_adm``; otherwise
    :func:`scenarios.rnow.estimate_r_now` gives a log-normal per territory (NaN: the admissions
    draws are kept) and every territory that could not use cases is logged with the reason.
    """
    basis = [{"basis": "admissions", "source": c, "shrink": 1.0, "note": None} for c in terrs]
    if scenario.rt_basis == "admissions" and not scenario.rt_pool:
        return r_now_adm, basis
    now = estimate_r_now(daily, terrs, level, parent, w, scenario.rt_basis, scenario.rt_pool)
    for code, note in zip(terrs, now.note, strict=True):
        if note:
            log.info("R now of %s as of %s: %s", code, scenario.as_of.date(), note)
    z = rng.standard_normal(r_now_adm.shape)
    drawn = np.exp(np.nan_to_num(now.log_r)[:, None] + np.nan_to_num(now.log_sd)[:, None] * z)
    return (np.where(np.isfinite(now.log_r)[:, None], drawn, r_now_adm),
            [now.info(i) for i in range(len(terrs))])


def _to_admission_dates(m: np.ndarray, f: np.ndarray, K: int, n_adm: int) -> np.ndarray:
    """``sum_k f_k m(t - k)`` for admission dates t = as_of - 7 ... (``n_adm`` days), from a
    multiplier ``m`` (T, S, U) on infection dates starting at as_of - 7 - K."""
    out = np.zeros(m.shape[:2] + (n_adm,))
    for k, fk in enumerate(f):
        if fk > 0:
            out += fk * m[:, :, K - k: K - k + n_adm]
    return out


def _r_now_admissions(adm_hist: np.ndarray, k_nb: np.ndarray, w: np.ndarray,
                      rng: np.random.Generator, n: int) -> np.ndarray:
    """Draws (T, n) of R^A now: Cori posterior on the last 7 days of admissions.

    Daily admissions are overdispersed (weekday pattern, clusters): the Poisson posterior of
    Cori is too sure, so its count is deflated by the negative-binomial variance factor
    ``1 + mu / k`` (mean kept).
    """
    G = len(w) - 1
    shape, scale = cori_posterior(adm_hist[:, -(G + 7 + 30):], w, 7)
    a_now, b_now = shape[:, -1], scale[:, -1]
    phi = 1.0 + adm_hist[:, -7:].mean(axis=1) / k_nb
    a_eff = 1.0 + (a_now - 1.0) / phi
    return rng.gamma(a_eff[:, None], (a_now * b_now / a_eff)[:, None], size=(len(a_now), n))


# ----------------------------------------------------------------------------- effects
def get_effects(daily: xr.Dataset, measures: pd.DataFrame, as_of: pd.Timestamp,
                params: EpiParameters, prior_policy: str = "as_of") -> EffectModel:
    """:func:`scenarios.history.fit_effects`, cached per (cube, as_of, parameters)."""
    # A vintage id identifies the data; without one (a cube built in memory) use the object.
    vid = daily.attrs.get("vintage_id")
    key = (vid, None if vid else id(daily), int(daily.sizes.get("date", 0)),
           str(as_of.date()), params.gi_mean, params.gi_sd, params.incubation_median,
           params.onset_to_admission_mean, params.onset_to_admission_sd, prior_policy,
           id(measures))
    if key not in _EFFECT_CACHE:
        _EFFECT_CACHE[key] = fit_effects(daily, measures, as_of, params, prior_policy)
        while len(_EFFECT_CACHE) > 8:
            _EFFECT_CACHE.popitem(last=False)
    return _EFFECT_CACHE[key]


# ----------------------------------------------------------------------------- projection
def project(
    scenario: Scenario,
    daily: xr.Dataset,
    measures: pd.DataFrame,
    effects: EffectModel,
    params: EpiParameters,
    yearly: xr.Dataset | None = None,
    weekly: xr.Dataset | None = None,
) -> Projection:
    """Sample the trajectories of a resolved scenario.

    Parameters
    ----------
    scenario:
        Resolved definition (absolute dates).
    daily:
        Daily cube cut at ``as_of`` (dates < as_of), all territories.
    measures:
        Measures table.
    effects:
        Effects learned from history before ``as_of``.
    params:
        Epidemiological parameters.
    yearly, weekly:
        Optional yearly (capacity) and weekly (emergency visits) cubes.

    Returns
    -------
    Projection
    """
    as_of = scenario.as_of
    H = scenario.horizon_days
    S = scenario.n_samples
    # One independent stream per random component, so that adding an intervention never
    # shifts the draws of another component: scenarios compared with the same seed share
    # R now, drift, effect draws and noise (common random numbers).
    (rng_r, rng_beta, rng_el, rng_rw, rng_noise, rng_los, rng_icu, rng_iv, rng_mob,
     rng_case, rng_vac, rng_var) = [np.random.default_rng(s)
                                    for s in np.random.SeedSequence(scenario.seed).spawn(12)]
    w = params.generation_interval()
    f = params.infection_to_admission()
    G, K = len(w) - 1, len(f) - 1
    terrs = _select_territories(daily, scenario.territories, scenario.source)
    # A territory reached through a group ("departments") without recent admissions is skipped
    # with a warning instead of failing the whole run; one named explicitly is an error below.
    recent = daily["inc_hosp"].sel(territory=terrs).values[:, -7:]
    complete = np.isfinite(recent).all(axis=1)
    skipped = [t for t, ok in zip(terrs, complete, strict=True)
               if not ok and t not in scenario.territories]
    if skipped:
        log.warning("skipped (no admissions in the 7 days before %s): %s", as_of.date(), skipped)
        terrs = [t for t in terrs if t not in skipped]
    if not terrs:
        raise ValueError(f"no territory with admissions in the 7 days before {as_of.date()}")
    T = len(terrs)
    sub = daily.sel(territory=terrs)
    hist_dates = pd.DatetimeIndex(sub["date"].values)
    if len(hist_dates) == 0 or hist_dates[-1] != as_of - pd.Timedelta(days=1):
        raise ValueError(
            f"the cube must hold data up to the day before as_of={as_of.date()} "
            f"(last date: {hist_dates[-1].date() if len(hist_dates) else None})"
        )
    raw_adm = sub["inc_hosp"].values.astype(float)
    missing = [c for c, row in zip(terrs, raw_adm, strict=True) if not np.isfinite(row[-7:]).all()]
    if missing:
        raise ValueError(
            f"inc_hosp is missing in the 7 days before as_of={as_of.date()} for {missing}: "
            "R cannot be estimated now; choose an earlier as_of or other territories"
        )
    adm_hist = np.nan_to_num(raw_adm)  # (T, D); NaN only before the series starts
    proj_dates = pd.date_range(as_of, periods=H)
    level = [str(v) for v in sub["territory_level"].values]
    parent = [str(v) for v in sub["territory_parent"].values]

    # 1. R now: from cases where they exist, else admissions (scenarios.rnow).
    k_nb = np.array([nb_size(row[-56:]) for row in sub["inc_hosp"].values.astype(float)])
    r_now_adm = _r_now_admissions(adm_hist, k_nb, w, rng_r, S)  # (T, S)
    r_now, r_basis = _r_now(scenario, daily, terrs, level, parent, w, r_now_adm, rng_case)

    # 2. Covariates on infection dates u in [as_of - 7 - K, as_of + H).
    u_dates = pd.date_range(as_of - pd.Timedelta(days=7 + K), as_of + pd.Timedelta(days=H - 1))
    all_codes = [str(t) for t in daily["territory"].values]
    all_levels = [str(v) for v in daily["territory_level"].values]
    deps = [c for c, lv in zip(all_codes, all_levels, strict=True) if lv == "department"]
    parents = dict(zip(all_codes, [str(v) for v in daily["territory_parent"].values],
                       strict=True))
    pops = dict(zip(all_codes, daily["population"].values.astype(float), strict=True))
    dep_x = department_covariates(measures, deps, u_dates, as_of=as_of)
    x_base = territory_covariates(dep_x, deps, terrs, level, parents, pops)  # (T, U, C)
    x_scen = x_base.copy()
    custom = np.zeros((T, S, len(u_dates)))  # log-R added directly (explicit effects)
    mob_shift = np.zeros((T, S, len(u_dates)))  # mobility points (explicit mobility effects)
    beta = effects.sample_beta(rng_beta, S)  # (S, C)
    mob_el = rng_el.normal(*effects.mobility_elasticity, size=S)
    str_el = rng_el.normal(*effects.stringency_elasticity, size=S)
    horizon_end = proj_dates[-1]
    for iv in scenario.interventions:
        cover = np.array([_coverage(iv, c, level[i], deps, parents, pops)
                          for i, c in enumerate(terrs)])
        rows = [i for i in range(T) if cover[i] > 0]
        if not rows:
            continue
        # (rows, U) intensity: the ramp times the share of the territory covered. For a région
        # or France partly covered, a covariate becomes a population share (as in history) and
        # an explicit effect is scaled by that share (first-order mixture).
        ramp_r = _ramp(u_dates, iv, horizon_end)[None, :] * cover[rows][:, None]
        cov = measure_covariate(iv.type, iv.hour) if iv.type not in ("relaxation", "custom") \
            else None
        explicit = isinstance(iv.effect, dict)
        if iv.type == "relaxation" and not explicit:
            lifted = iv.lifts or (*LEVELS, "school_closure")
            for c in lifted:
                j = COVARIATES.index(c)
                x_scen[rows, :, j] = np.minimum(x_scen[rows, :, j], 1.0 - ramp_r)
        elif cov is not None and not explicit:
            js = [COVARIATES.index(c) for c in LEVELS[: LEVELS.index(cov) + 1]] \
                if cov in LEVELS else [COVARIATES.index(cov)]
            for j in js:
                x_scen[rows, :, j] = np.maximum(x_scen[rows, :, j], ramp_r)
        if explicit:
            eff = iv.effect
            if "transmission" in eff:
                sd = float(eff.get("transmission_sd", 0.0))
                lr = np.log1p(eff["transmission"]) + sd * rng_iv.standard_normal(S)
                custom[rows] += lr[None, :, None] * ramp_r[:, None, :]
            if "mobility" in eff:
                mob_shift[rows] += eff["mobility"] * ramp_r[:, None, :]
                custom[rows] += (mob_el[:, None] * eff["mobility"])[None] * ramp_r[:, None, :]
            if "stringency" in eff:
                custom[rows] += (str_el[:, None] * eff["stringency"])[None] * ramp_r[:, None, :]
    # Levers: vaccination coverage and a variant, on infection dates like the measures.
    levers: dict[str, Any] = {}
    variant_lr = np.zeros((T, S, len(u_dates)))
    if scenario.vaccination:
        lr, levers["vaccination"] = vaccination_log_r(scenario.vaccination, daily, terrs,
                                                      u_dates, as_of, rng_vac, S)
        custom += lr
    if scenario.variant:
        variant_lr, levers["variant"] = variant_log_r(scenario.variant, daily, terrs, parents,
                                                      u_dates, as_of, params.gi_mean, rng_var,
                                                      S)
        custom += variant_lr
    log_m = np.einsum("tuc,sc->tsu", x_scen, beta) + custom  # (T, S, U)
    n_adm = 7 + H
    ma = _to_admission_dates(np.exp(log_m), f, K, n_adm)
    ref = ma[:, :, :7].mean(axis=-1, keepdims=True)
    mult = ma[:, :, 7:] / ref  # (T, S, H)
    # The cap (R0 without measures) rises with the variant's share of infections.
    r_cap = params.r_max * (_to_admission_dates(np.exp(variant_lr), f, K, n_adm)[:, :, 7:]
                            if scenario.variant else 1.0)
    # 3. Unexplained drift of log R.
    sig = np.array([effects.sigma_rw.get(lv, effects.sigma_rw["department"]) for lv in level])
    rw = np.cumsum(rng_rw.standard_normal((T, S, H)) * sig[:, None, None], axis=-1)
    r_path = np.minimum(r_now[:, :, None] * mult * np.exp(rw), r_cap)

    # 4. Renewal on admissions.
    buf = np.concatenate([np.broadcast_to(adm_hist[:, None, -G:], (T, S, G)),
                          np.zeros((T, S, H))], axis=-1)
    w_rev = w[1:][::-1]  # w_G .. w_1
    # Susceptibles (as infections): population minus infections implied by past admissions.
    pop_t = np.nan_to_num(sub["population"].values.astype(float), nan=np.inf)
    s0 = np.maximum(pop_t - adm_hist.sum(axis=1) / params.ihr, 0.05 * pop_t)  # (T,)
    cum = np.zeros((T, S))
    for h in range(H):
        lam = buf[:, :, h: h + G] @ w_rev
        frac = np.clip(1.0 - cum / s0[:, None], 0.0, 1.0)
        buf[:, :, G + h] = r_path[:, :, h] * frac * lam
        cum += buf[:, :, G + h] / params.ihr
    adm_mean = buf[:, :, G:]  # (T, S, H)
    u = rng_noise.uniform(size=(S, H))  # common random numbers: monotone in the mean
    kk = k_nb[:, None, None]
    adm_obs = stats.nbinom.ppf(u[None], kk, kk / (kk + np.maximum(adm_mean, 1e-9)))

    # 5. Occupancy.
    samples: dict[str, np.ndarray] = {"inc_hosp": adm_obs, "inc_hosp_mean": adm_mean}
    los_fac_draw = np.exp(params.los_sd_log * rng_los.standard_normal(S))
    p = params

    def surv_hosp(c: float | np.ndarray) -> np.ndarray:
        return (p.p_icu_path * los_survival(p.los_ward_icu_path_median * np.asarray(c),
                                            p.los_shape, p.max_los)
                + (1 - p.p_icu_path) * los_survival(p.los_ward_median * np.asarray(c),
                                                    p.los_shape, p.max_los))

    def surv_icu(c: float | np.ndarray) -> np.ndarray:
        return los_survival(p.los_icu_median * np.asarray(c), p.los_shape, p.max_los)

    icu_adm_hist = np.nan_to_num(sub["inc_icu"].values.astype(float)) if "inc_icu" in sub \
        else np.zeros_like(adm_hist)
    last28_h = adm_hist[:, -28:].sum(axis=1)
    last28_i = icu_adm_hist[:, -28:].sum(axis=1)
    p_icu = rng_icu.beta(1 + last28_i[:, None], 1 + np.maximum(last28_h - last28_i, 0)[:, None],
                     size=(T, S))
    observed_last: dict[str, np.ndarray] = {}
    L = p.max_los
    for ind, adm_h, adm_f, surv_for in (
        ("hosp", adm_hist, adm_mean, surv_hosp),
        ("icu", icu_adm_hist, adm_mean * p_icu[:, :, None], surv_icu),
    ):
        stock = sub[ind].values.astype(float) if ind in sub else np.full_like(adm_hist, np.nan)
        obs_last = _last_valid(stock)
        observed_last[ind] = obs_last
        out = np.zeros((T, S, H))
        # Survival curves computed once on a fine grid of stay-length factors (1.2 % steps)
        # and looked up, instead of evaluating gamma tails per territory and sample.
        fine_sv = surv_for(FINE_GRID)  # (F, L+1)
        coarse_sv = fine_sv[COARSE_IN_FINE]

        def coarse(_c: np.ndarray, _sv: np.ndarray = coarse_sv) -> np.ndarray:
            return _sv

        log_fine = np.log(FINE_GRID)
        for i in range(T):
            c0 = fit_los_factor(adm_h[i], stock[i], coarse) if p.los_fit else 1.0
            fac = c0 * los_fac_draw  # (S,)
            j = np.clip(np.searchsorted(log_fine, np.log(fac)), 0, len(FINE_GRID) - 1)
            sv = fine_sv[j]  # (S, L+1)
            hist_tail = np.broadcast_to(adm_h[i, -L:], (S, L))
            seq = np.concatenate([hist_tail, adm_f[i]], axis=1)  # (S, L + H)
            # Occupancy on the last history day and on each projected day.
            win = np.lib.stride_tricks.sliding_window_view(seq, L + 1, axis=1)  # (S, H, L+1)
            mod = np.einsum("shl,sl->sh", win, sv[:, ::-1])
            mod_last = np.einsum("sl,sl->s", hist_tail[:, ::-1], sv[:, :L])
            gap = (obs_last[i] - mod_last) if np.isfinite(obs_last[i]) else np.zeros(S)
            mean_los = (sv.sum(axis=1))  # days
            decay = np.exp(-np.arange(1, H + 1)[None, :] / mean_los[:, None])
            out[i] = np.maximum(mod + gap[:, None] * decay, 0.0)
        samples[ind] = out

    # 6. Emergency visits and mobility.
    samples["er_visits_covid_rate"] = _er_projection(sub, terrs, level, parent, adm_hist,
                                                     adm_mean, weekly, daily)
    samples["mobility_transit_stations"] = _mobility_projection(
        sub, x_scen, x_base, effects, mob_shift, rng_mob, S, K, H)

    capacity = _capacity(scenario, terrs, yearly, as_of)
    return Projection(terrs, proj_dates, samples, capacity, r_now, observed_last, skipped,
                      r_now_adm, r_basis, levers)


def _er_projection(sub: xr.Dataset, terrs: list[str], level: list[str], parent: list[str],
                   adm_hist: np.ndarray, adm_mean: np.ndarray, weekly: xr.Dataset | None,
                   daily: xr.Dataset) -> np.ndarray:
    """SurSaUD Covid ED-visit rate (per 100,000 ED visits) implied by projected admissions.

    ratio = mean rate / mean weekly admissions per 100,000 inhabitants over the last 4 complete
    weeks in the territory's région (France for France); NaN when the weekly cube is missing.
    """
    T, S, H = adm_mean.shape
    out = np.full((T, S, H), np.nan)
    if weekly is None or "er_visits_covid_rate" not in weekly:
        return out
    wk = weekly["er_visits_covid_rate"]
    pops = dict(zip([str(t) for t in daily["territory"].values],
                    daily["population"].values.astype(float), strict=True))
    codes = set(str(t) for t in wk["territory"].values)
    for i, code in enumerate(terrs):
        reg = code if level[i] in ("region", "country") else parent[i]
        if reg not in codes or reg not in daily["territory"].values:
            continue
        rate = wk.sel(territory=reg).to_series().dropna()
        if len(rate) < 4:
            continue
        rate = rate.iloc[-4:]
        adm_reg = daily["inc_hosp"].sel(territory=reg).to_series()
        weekly_adm = [adm_reg[(adm_reg.index > d - pd.Timedelta(days=7)) &
                              (adm_reg.index <= d)].sum() for d in rate.index]
        per100k = np.mean(weekly_adm) / pops[reg] * 1e5
        if per100k <= 0:
            continue
        ratio = float(rate.mean()) / per100k
        seq = np.concatenate([np.broadcast_to(adm_hist[i, -6:], (S, 6)), adm_mean[i]], axis=1)
        roll = np.lib.stride_tricks.sliding_window_view(seq, 7, axis=1).sum(-1)  # (S, H)
        out[i] = ratio * roll / pops[code] * 1e5
    return out


def _mobility_projection(sub: xr.Dataset, x_scen: np.ndarray, x_base: np.ndarray,
                         effects: EffectModel, mob_shift: np.ndarray,
                         rng: np.random.Generator, S: int, K: int, H: int) -> np.ndarray:
    """Transit-stations mobility index (% vs Jan-Feb 2020) under the scenario: last 7-day mean
    plus the learned response to the change of measures, plus explicit mobility effects."""
    T = x_scen.shape[0]
    if "mobility_transit_stations" not in sub:
        return np.full((T, S, H), np.nan)
    v = sub["mobility_transit_stations"].values.astype(float)[:, -7:]
    with np.errstate(all="ignore"):
        base = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in v])
    resp = rng.multivariate_normal(effects.mobility_response_mean, effects.mobility_response_cov,
                                   size=S, method="cholesky")  # (S, C)
    start = 7 + K  # index of as_of on the infection-date axis
    dx = x_scen[:, start:, :] - x_base[:, start - 1: start, :]  # change vs the day before as_of
    return base[:, None, None] + np.einsum("thc,sc->tsh", dx, resp) + mob_shift[:, :, start:]


def _capacity(scenario: Scenario, terrs: list[str], yearly: xr.Dataset | None,
              as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    """Beds per territory: the scenario's numbers, else DREES adult ICU beds for ``icu``."""
    out = {}
    for ind in OCCUPANCY:
        spec = scenario.capacity.get(ind, "cube" if ind == "icu" else None)
        vals = np.full(len(terrs), np.nan)
        for i, code in enumerate(terrs):
            v = spec.get(code, spec.get("default", "cube" if ind == "icu" else None)) \
                if isinstance(spec, dict) else spec
            if v == "cube":
                v = _cube_beds(yearly, code, as_of) if ind == "icu" else None
            if v is not None:
                vals[i] = float(v)
        out[ind] = vals
    return out


def _cube_beds(yearly: xr.Dataset | None, code: str, as_of: pd.Timestamp) -> float | None:
    if yearly is None or "icu_beds_adult" not in yearly or code not in yearly["territory"]:
        return None
    s = yearly["icu_beds_adult"].sel(territory=code).to_series()
    s = s[s.index < as_of].dropna()
    return float(s.iloc[-1]) if len(s) else None


# ----------------------------------------------------------------------------- summaries
def summarise(proj: Projection) -> dict[str, dict[str, Any]]:
    """Peak, peak date, capacity, exceedance and bed-days per territory and indicator."""
    out: dict[str, dict[str, Any]] = {}
    dates = proj.dates
    for i, code in enumerate(proj.territories):
        per: dict[str, Any] = {"r_now": _q(proj.r_now[i])}
        if proj.r_now_admissions is not None:
            per["r_now_admissions"] = _q(proj.r_now_admissions[i])
        if proj.r_basis:
            per["r_basis"] = proj.r_basis[i]
        for ind in ("inc_hosp", "hosp", "icu"):
            # Admissions: the expected values, without daily observation noise, which would
            # inflate the peak (totals are unaffected in expectation).
            x = proj.samples["inc_hosp_mean" if ind == "inc_hosp" else ind][i]  # (S, H)
            med = np.median(x, axis=0)
            peak_i = int(np.argmax(med))
            entry: dict[str, Any] = {
                "peak": round(float(med[peak_i]), 1),
                "peak_date": str(dates[peak_i].date()),
                "peak_90": [round(float(v), 1) for v in np.quantile(x.max(axis=1), [0.05, 0.95])],
                "total" if ind == "inc_hosp" else "bed_days": _q(x.sum(axis=1)),
            }
            if ind in OCCUPANCY:
                cap = float(proj.capacity[ind][i])
                entry["observed_last"] = _r(proj.observed_last[ind][i])
                if np.isfinite(cap):
                    over = x > cap  # (S, H)
                    p_day = over.mean(axis=0)
                    first = np.where(p_day >= 0.5)[0]
                    first5 = np.where(p_day >= 0.05)[0]
                    entry.update({
                        "capacity": cap,
                        "prob_exceed": round(float(over.any(axis=1).mean()), 3),
                        "prob_exceed_7d": round(float(over[:, :7].any(axis=1).mean()), 3),
                        "prob_exceed_14d": round(float(over[:, :14].any(axis=1).mean()), 3),
                        "first_exceed_date": str(dates[first[0]].date()) if len(first) else None,
                        "first_possible_exceed_date": str(dates[first5[0]].date())
                        if len(first5) else None,
                        "bed_days_over_capacity": _q(np.maximum(x - cap, 0).sum(axis=1)),
                    })
                else:
                    entry.update({"capacity": None, "prob_exceed": None,
                                  "first_exceed_date": None})
            per[ind] = entry
        out[code] = per
    return out


def _r(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 1)


def _q(x: np.ndarray) -> dict[str, float]:
    qs = np.quantile(x, [0.05, 0.5, 0.95])
    return {"q05": round(float(qs[0]), 2), "median": round(float(qs[1]), 2),
            "q95": round(float(qs[2]), 2)}


def quantile_table(proj: Projection, quantiles: tuple[float, ...] = QUANTILES) -> pd.DataFrame:
    """Long table ``territory, indicator, date, quantile, value`` of the sampled trajectories."""
    frames = []
    for ind in INDICATORS:
        arr = proj.samples[ind]
        if not np.isfinite(arr).any():
            continue
        with np.errstate(all="ignore"):
            q = np.quantile(arr, quantiles, axis=1)  # (Q, T, H)
        qq, tt, hh = np.meshgrid(np.arange(len(quantiles)), np.arange(len(proj.territories)),
                                 np.arange(len(proj.dates)), indexing="ij")
        frames.append(pd.DataFrame({
            "territory": np.asarray(proj.territories)[tt.ravel()],
            "indicator": ind,
            "date": proj.dates[hh.ravel()].strftime("%Y-%m-%d"),
            "quantile": np.asarray(quantiles)[qq.ravel()],
            "value": np.round(q.ravel(), 3),
        }))
    df = pd.concat(frames, ignore_index=True)
    return df[np.isfinite(df["value"])]


# ----------------------------------------------------------------------------- public API
def _day_after_last(cube: xr.Dataset) -> pd.Timestamp:
    """The day after the last date with any published admissions."""
    has = np.isfinite(cube["inc_hosp"].values).any(axis=0)
    return pd.Timestamp(cube["date"].values[np.where(has)[0][-1]]) + pd.Timedelta(days=1)


def _open(frequency: str, as_of: pd.Timestamp | None, settings: Any = None) -> xr.Dataset | None:
    try:
        from features.store import open_cube
    except ImportError:  # features not installed: the caller must pass the cube
        return None
    if frequency == "daily":  # no cube at all must fail loudly, not degrade
        return open_cube(frequency, as_of=as_of, settings=settings)
    try:
        return open_cube(frequency, as_of=as_of, settings=settings)
    except Exception as exc:  # missing frequency in an older vintage: degrade, do not fail
        log.warning("no %s cube as of %s: %s", frequency, as_of.date(), exc)
        return None


def run_scenario(
    definition: dict[str, Any] | str | Any,
    cube: xr.Dataset | None = None,
    as_of: str | pd.Timestamp | None = None,
    *,
    territories: list[str] | None = None,
    yearly: xr.Dataset | None = None,
    weekly: xr.Dataset | None = None,
    measures: pd.DataFrame | None = None,
    n_samples: int | None = None,
    rt_basis: str | None = None,
    rt_pool: bool | None = None,
    settings: Any = None,
    include_trajectories: bool = True,
    return_projection: bool = False,
) -> dict[str, Any]:
    """Run a scenario and return a JSON-able result.

    Parameters
    ----------
    definition:
        Mapping, path of a YAML file, or a resolved :class:`~scenarios.schema.Scenario`.
    cube:
        Daily cube (dims territory, date). Default: ``features.store.open_cube("daily", as_of)``.
        Dates on or after ``as_of`` are dropped here in any case.
    as_of:
        Overrides the definition's ``as_of``; default the definition's, else the day after the
        cube's last date.
    territories:
        Overrides the definition's territories.
    yearly, weekly:
        Yearly (ICU beds) and weekly (ED visits) cubes; opened from the store when ``cube`` is
        not given.
    measures:
        Measures table; default ``scenarios/measures_fr.csv``.
    n_samples:
        Overrides the number of samples.
    rt_basis, rt_pool:
        Override the definition's: ``rt_basis="cases"`` takes R now from daily cases where they
        exist, ``"admissions"`` from admissions only; ``rt_pool`` shrinks a département's R
        toward its région's (:mod:`scenarios.rnow`). ``"admissions"`` without pooling is the
        method used before cases were ingested.
    settings:
        ``features.settings.Settings`` of the store to open cubes from (default: environment).
    include_trajectories:
        Add the long quantile records (large for all départements).
    return_projection:
        Also return the raw :class:`Projection` under the key ``"_projection"`` (not JSON-able).

    Returns
    -------
    dict
        ``inputs`` (resolved definition), ``vintage``, ``effects`` (learned coefficients),
        ``summary`` (territory -> indicator -> figures), ``trajectories`` (records
        ``territory, indicator, date, quantile, value``), ``timing_s``.
    """
    t0 = time.perf_counter()
    opened = cube is None
    if isinstance(definition, Scenario):
        scenario = definition
        if as_of is not None or territories:
            raise ValueError("give as_of/territories in the definition, not with a Scenario")
    else:
        if isinstance(definition, str | Path):
            definition = load_definition(definition)
        if as_of is None and not definition.get("as_of"):
            # No date anywhere: start the day after the last admissions of the cube.
            if cube is None:
                cube = _open("daily", None, settings)
                opened = True
            as_of = _day_after_last(cube)
        scenario = resolve(definition, as_of=as_of, territories=territories)
    if n_samples:
        scenario = replace(scenario, n_samples=int(n_samples))
    if rt_basis:
        if rt_basis not in ("cases", "admissions"):
            raise ValueError(f"rt_basis must be 'cases' or 'admissions', not {rt_basis!r}")
        scenario = replace(scenario, rt_basis=rt_basis)
    if rt_pool is not None:
        scenario = replace(scenario, rt_pool=bool(rt_pool))
    if opened:
        cube = _open("daily", scenario.as_of, settings)  # the vintage as of, cut at as_of
        if cube is None:
            raise RuntimeError("no cube given and features.store.open_cube is unavailable")
        yearly = yearly if yearly is not None else _open("yearly", scenario.as_of, settings)
        weekly = weekly if weekly is not None else _open("weekly", scenario.as_of, settings)
    daily = cube.sel(date=cube["date"] < np.datetime64(scenario.as_of))
    if weekly is not None:
        weekly = weekly.sel(date=weekly["date"] < np.datetime64(scenario.as_of))
    measures = measures if measures is not None else load_measures()
    params = EpiParameters().with_overrides(scenario.parameters)
    effects = get_effects(cube, measures, scenario.as_of, params, scenario.prior_policy)
    proj = project(scenario, daily, measures, effects, params, yearly, weekly)
    result: dict[str, Any] = {
        "inputs": scenario.to_dict(),
        "vintage": {
            "vintage_id": cube.attrs.get("vintage_id"),
            "issued_at": cube.attrs.get("issued_at"),
            "as_of": str(scenario.as_of.date()),
            "vintage_issued_after_as_of": cube.attrs.get("vintage_issued_after_as_of"),
            "last_date": str(pd.Timestamp(daily["date"].values[-1]).date()),
        },
        "parameters": {k: v for k, v in params.__dict__.items() if k != "extra"},
        "effects": effects.to_dict(),
        "summary": summarise(proj),
        "skipped_territories": proj.skipped,
        "levers": proj.levers,
    }
    if include_trajectories:
        result["trajectories"] = quantile_table(proj).to_dict(orient="records")
    result["timing_s"] = round(time.perf_counter() - t0, 3)
    if return_projection:
        result["_projection"] = proj
    return result
