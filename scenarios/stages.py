"""The stages of a scenario projection (:func:`scenarios.engine.project` runs them in order).

Every stage takes and returns labelled arrays. Dimensions: ``territory`` (projected codes, with
the coordinates ``territory_level``, ``territory_parent`` and ``population`` of the cube),
``sample`` (0 … n_samples - 1), ``date`` (a day: history before ``as_of``, or a projected or
admission day from it), ``infection_date`` (days on which infections happen, from
``as_of - 7 - max_delay``) and ``covariate`` (:data:`scenarios.measures.COVARIATES`). Units are
in each variable's ``attrs``.

0. :func:`select_history`: the projected territories and their history.
1. :func:`draw_r_now`: R of admissions now, per territory and sample.
2. :func:`measure_multiplier`: what measures, interventions and levers do to R, on admission
   dates, relative to the window behind R now (:mod:`scenarios.interventions`).
3. :func:`drift`: R on each projected day, with an unexplained random walk, capped.
4. :func:`renewal`: admissions by the renewal equation, with observation noise.
5. :func:`scenarios.occupancy.occupancy`: beds and ICU beds occupied.
6. :func:`er_visits` and :func:`mobility`: emergency-visit rate and transit mobility.

Then :func:`capacity` gives the beds the occupancy is compared with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from scenarios.history import EffectModel
from scenarios.interventions import (
    INFECTION_DATE,
    EffectDraws,
    Hierarchy,
    apply_interventions,
    status_quo_covariates,
)
from scenarios.levers import vaccination_log_r, variant_log_r
from scenarios.params import EpiParameters
from scenarios.rnow import estimate_r_now
from scenarios.rt import cori_posterior, nb_size
from scenarios.scenario import Scenario
from scenarios.schema import ScenarioValidationError

log = logging.getLogger(__name__)

OCCUPANCY = ("hosp", "icu")
GROUPS = ("departments", "metro_departments", "regions")
_TSD = ("territory", "sample", "date")


@dataclass(frozen=True)
class Streams:
    """One independent random stream per component of a projection.

    Adding an intervention never shifts the draws of another component: scenarios compared
    with the same seed share R now, drift, effect draws and noise (common random numbers).
    The order of the fields is the order of ``SeedSequence(seed).spawn``: never reorder them.
    """

    r_now: np.random.Generator
    beta: np.random.Generator
    elasticity: np.random.Generator
    drift: np.random.Generator
    noise: np.random.Generator
    los: np.random.Generator
    icu: np.random.Generator
    intervention: np.random.Generator
    mobility: np.random.Generator
    cases: np.random.Generator
    vaccination: np.random.Generator
    variant: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        children = np.random.SeedSequence(seed).spawn(len(fields(cls)))
        return cls(*(np.random.default_rng(s) for s in children))


def _admissions(history: xr.Dataset) -> np.ndarray:
    """(T, D) admissions/day before ``as_of``, NaN (before a series starts) as 0."""
    return np.nan_to_num(history["inc_hosp"].values.astype(float))


# ----------------------------------------------------------------------------- 0. history
def select_history(scenario: Scenario, daily: xr.Dataset) -> tuple[xr.Dataset, list[str]]:
    """Stage 0: the projected territories' history, and those of a group left out.

    A territory reached through a group (``departments``…) without admissions on each of the
    7 days before ``as_of`` is skipped with a warning; one named explicitly is an error.

    Parameters
    ----------
    scenario : Scenario
        Territories (codes and groups) and ``as_of``.
    daily : xarray.Dataset
        (territory, date) daily cube cut at ``as_of`` (dates < as_of), every territory.

    Returns
    -------
    history : xarray.Dataset
        ``daily`` at the projected territories, in the scenario's order.
    skipped : list of str
        Codes of a group left out.

    Raises
    ------
    ScenarioValidationError
        A code not in the cube.
    ValueError
        No territory left, the cube does not reach the day before ``as_of``, or admissions of
        a named territory are missing in the last 7 days.
    """
    as_of = scenario.as_of
    terrs = _select_territories(daily, scenario.territories, scenario.source)
    recent = daily["inc_hosp"].sel(territory=terrs).values[:, -7:]
    complete = np.isfinite(recent).all(axis=1)
    skipped = [t for t, ok in zip(terrs, complete, strict=True)
               if not ok and t not in scenario.territories]
    if skipped:
        log.warning("skipped (no admissions in the 7 days before %s): %s", as_of.date(), skipped)
        terrs = [t for t in terrs if t not in skipped]
    if not terrs:
        raise ValueError(f"no territory with admissions in the 7 days before {as_of.date()}")
    history = daily.sel(territory=terrs)
    hist_dates = pd.DatetimeIndex(history["date"].values)
    if len(hist_dates) == 0 or hist_dates[-1] != as_of - pd.Timedelta(days=1):
        raise ValueError(
            f"the cube must hold data up to the day before as_of={as_of.date()} "
            f"(last date: {hist_dates[-1].date() if len(hist_dates) else None})"
        )
    raw_adm = history["inc_hosp"].values.astype(float)
    missing = [c for c, row in zip(terrs, raw_adm, strict=True) if not np.isfinite(row[-7:]).all()]
    if missing:
        raise ValueError(
            f"inc_hosp is missing in the 7 days before as_of={as_of.date()} for {missing}: "
            "R cannot be estimated now; choose an earlier as_of or other territories"
        )
    return history, skipped


def _select_territories(ds: xr.Dataset, wanted: tuple[str, ...],
                        source: str = "<definition>") -> list[str]:
    """Codes of the cube a scenario names, groups expanded, first occurrence kept."""
    codes = [str(t) for t in ds["territory"].values]
    level = [str(v) for v in ds["territory_level"].values]
    unknown = [w for w in wanted if w not in GROUPS and w not in codes]
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


# ----------------------------------------------------------------------------- 1. R now
def draw_r_now(scenario: Scenario, daily: xr.Dataset, history: xr.Dataset, w: np.ndarray,
               rng_admissions: np.random.Generator,
               rng_cases: np.random.Generator) -> tuple[xr.Dataset, list[dict[str, Any]]]:
    """Stage 1: draws of R now, from daily cases where they exist, from admissions otherwise.

    Parameters
    ----------
    scenario : Scenario
        ``n_samples``, ``rt_basis`` and ``rt_pool`` (:mod:`scenarios.rnow`).
    daily : xarray.Dataset
        (territory, date) daily cube cut at ``as_of``, every territory (régions of the
        départements, between-département variance).
    history : xarray.Dataset
        (territory, date) the projected territories' history (:func:`select_history`).
    w : numpy.ndarray
        (G + 1,) generation interval, days.
    rng_admissions, rng_cases : numpy.random.Generator
        Streams of the draws from admissions and of the draws from the case-based estimate.

    Returns
    -------
    r_now : xarray.Dataset
        ``r_now`` and ``r_now_admissions`` (territory, sample), R of admissions now (the
        latter from admissions only); ``nb_size`` (territory,), negative-binomial size of
        daily admissions over the last 8 weeks.
    basis : list of dict
        Per territory, what R now came from (:meth:`scenarios.rnow.RNow.info`).
    """
    k_nb = np.array([nb_size(row[-56:]) for row in history["inc_hosp"].values.astype(float)])
    r_adm = _r_now_admissions(_admissions(history), k_nb, w, rng_admissions, scenario.n_samples)
    codes = [str(t) for t in history["territory"].values]
    r_now, basis = _r_now_cases(scenario, daily, history, w, r_adm, rng_cases)
    ds = xr.Dataset(
        {"r_now": (("territory", "sample"), r_now, {"units": "1"}),
         "r_now_admissions": (("territory", "sample"), r_adm, {"units": "1"}),
         "nb_size": ("territory", k_nb, {"units": "1"})},
        coords={"territory": codes, "sample": np.arange(scenario.n_samples)})
    return ds, basis


def _r_now_admissions(adm_hist: np.ndarray, k_nb: np.ndarray, w: np.ndarray,
                      rng: np.random.Generator, n: int) -> np.ndarray:
    """Draws (T, n) of R^A now: Cori posterior on the last 7 days of admissions (T, D).

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


def _r_now_cases(scenario: Scenario, daily: xr.Dataset, history: xr.Dataset, w: np.ndarray,
                 r_now_adm: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draws (T, S) of R now and, per territory, what they came from.

    ``rt_basis: admissions`` without pooling keeps the admissions draws ``r_now_adm``; otherwise
    :func:`scenarios.rnow.estimate_r_now` gives a log-normal per territory (NaN: the admissions
    draws are kept) and every territory that could not use cases is logged with the reason.
    """
    terrs = [str(t) for t in history["territory"].values]
    basis = [{"basis": "admissions", "source": c, "shrink": 1.0, "note": None} for c in terrs]
    if scenario.rt_basis == "admissions" and not scenario.rt_pool:
        return r_now_adm, basis
    level = [str(v) for v in history["territory_level"].values]
    parent = [str(v) for v in history["territory_parent"].values]
    now = estimate_r_now(daily, terrs, level, parent, w, scenario.rt_basis, scenario.rt_pool)
    for code, note in zip(terrs, now.note, strict=True):
        if note:
            log.info("R now of %s as of %s: %s", code, scenario.as_of.date(), note)
    z = rng.standard_normal(r_now_adm.shape)
    drawn = np.exp(np.nan_to_num(now.log_r)[:, None] + np.nan_to_num(now.log_sd)[:, None] * z)
    return (np.where(np.isfinite(now.log_r)[:, None], drawn, r_now_adm),
            [now.info(i) for i in range(len(terrs))])


# ----------------------------------------------------------------------------- 2. measures
def measure_multiplier(scenario: Scenario, daily: xr.Dataset, history: xr.Dataset,
                       measures: pd.DataFrame, effects: EffectModel, params: EpiParameters,
                       streams: Streams) -> tuple[xr.Dataset, dict[str, Any]]:
    """Stage 2: multiplier of R now on each projected admission date, and the R cap.

    The multiplier on infection dates u is ``exp(beta · x(u) + explicit(u) + levers(u))``:
    measure covariates x (status quo, then the scenario's interventions), explicit effects,
    vaccination and variant levers. It reaches admissions through the infection-to-admission
    delay and is normalised on the 7 admission days before ``as_of`` (the window of R now),
    so that what R now already contains is not counted twice.

    Parameters
    ----------
    scenario : Scenario
        ``as_of``, ``horizon_days``, ``n_samples``, interventions and levers.
    daily : xarray.Dataset
        (territory, date) daily cube cut at ``as_of``, every territory.
    history : xarray.Dataset
        (territory, date) the projected territories' history.
    measures : pandas.DataFrame
        The measures table.
    effects : EffectModel
        Effects learned from history.
    params : EpiParameters
        Delay ``f`` (infection to admission), mean generation interval, ``r_max``.
    streams : Streams
        Random streams (``beta``, ``elasticity``, ``intervention``, ``vaccination``,
        ``variant``).

    Returns
    -------
    multiplier : xarray.Dataset
        ``multiplier`` (territory, sample, date) and ``r_cap`` (territory, sample, date, or a
        scalar without variant), dimensionless; ``covariates`` and ``covariates_status_quo``
        (territory, infection_date, covariate); ``mobility_shift`` (territory, sample,
        infection_date), transit mobility points.
    levers : dict
        What the vaccination and variant levers used (JSON-able).
    """
    as_of, n_h, n_s = scenario.as_of, scenario.horizon_days, scenario.n_samples
    f = params.infection_to_admission()
    u_dates = pd.date_range(as_of - pd.Timedelta(days=7 + len(f) - 1),
                            as_of + pd.Timedelta(days=n_h - 1))
    hierarchy = Hierarchy.of(daily)
    x_base = status_quo_covariates(measures, hierarchy, history, u_dates, as_of)
    draws = EffectDraws.draw(effects, streams.beta, streams.elasticity, n_s)
    scen = apply_interventions(scenario.interventions, x_base, hierarchy, draws,
                               streams.intervention, as_of + pd.Timedelta(days=n_h - 1))
    vac, var, levers = _lever_log_r(scenario, daily, history, hierarchy, u_dates, params,
                                    streams)
    added = scen["log_r_explicit"]
    for lever in (vac, var):
        added = added if lever is None else added + lever
    log_m = _measure_log_r(scen["covariates"], draws.beta) + added
    m_adm = to_admission_dates(np.exp(log_m), f, as_of, n_h)
    ref = m_adm.isel(date=slice(None, 7)).mean("date", skipna=False)
    # The cap (R0 without measures) rises with the variant's share of infections.
    r_cap = xr.DataArray(params.r_max) if var is None else params.r_max * to_admission_dates(
        np.exp(var), f, as_of, n_h).isel(date=slice(7, None))
    out = xr.Dataset(
        {"multiplier": m_adm.isel(date=slice(7, None)) / ref, "r_cap": r_cap,
         "covariates": scen["covariates"], "covariates_status_quo": x_base,
         "mobility_shift": scen["mobility_shift"]})
    out["multiplier"].attrs["units"] = out["r_cap"].attrs["units"] = "1"
    return out, levers


def _measure_log_r(covariates: xr.DataArray, beta: xr.DataArray) -> xr.DataArray:
    """``beta · x``: log R of the measures, (territory, sample, infection_date), from the
    covariates (territory, infection_date, covariate) and the effects (sample, covariate)."""
    x = covariates.transpose("territory", INFECTION_DATE, "covariate")
    lm = np.einsum("tuc,sc->tsu", x.values, beta.transpose("sample", "covariate").values)
    return xr.DataArray(lm, dims=("territory", "sample", INFECTION_DATE),
                        coords={"territory": x["territory"].values,
                                INFECTION_DATE: x[INFECTION_DATE].values},
                        attrs={"units": "log R"})


def _lever_log_r(scenario: Scenario, daily: xr.Dataset, history: xr.Dataset,
                 hierarchy: Hierarchy, u_dates: pd.DatetimeIndex, params: EpiParameters,
                 streams: Streams) -> tuple[xr.DataArray | None, xr.DataArray | None, dict]:
    """log R added by the vaccination and the variant levers (territory, sample,
    infection_date; None without the lever), and their JSON-able description."""
    terrs = [str(t) for t in history["territory"].values]
    dims = ("territory", "sample", INFECTION_DATE)
    coords = {"territory": terrs, INFECTION_DATE: u_dates}
    levers: dict[str, Any] = {}
    vac = var = None
    if scenario.vaccination:
        lr, levers["vaccination"] = vaccination_log_r(
            scenario.vaccination, daily, terrs, u_dates, scenario.as_of, streams.vaccination,
            scenario.n_samples)
        vac = xr.DataArray(lr, dims=dims, coords=coords, attrs={"units": "log R"})
    if scenario.variant:
        lr, levers["variant"] = variant_log_r(
            scenario.variant, daily, terrs, hierarchy.parents, u_dates, scenario.as_of,
            params.gi_mean, streams.variant, scenario.n_samples)
        var = xr.DataArray(lr, dims=dims, coords=coords, attrs={"units": "log R"})
    return vac, var, levers


def to_admission_dates(m: xr.DataArray, f: np.ndarray, as_of: pd.Timestamp,
                       horizon: int) -> xr.DataArray:
    """``sum_k f_k m(t - k)`` on admission dates t = as_of - 7 … as_of + horizon - 1.

    Parameters
    ----------
    m : xarray.DataArray
        (territory, sample, infection_date) from ``as_of - 7 - (len(f) - 1)``.
    f : numpy.ndarray
        (K + 1,) infection-to-admission delay, days.

    Returns
    -------
    xarray.DataArray
        (territory, sample, date), same units as ``m``.
    """
    K, n_adm = len(f) - 1, 7 + horizon
    vals = m.transpose("territory", "sample", INFECTION_DATE).values
    out = np.zeros(vals.shape[:2] + (n_adm,))
    for k, fk in enumerate(f):
        if fk > 0:
            out += fk * vals[:, :, K - k: K - k + n_adm]
    dates = pd.date_range(as_of - pd.Timedelta(days=7), periods=n_adm)
    return xr.DataArray(out, dims=_TSD, coords={"territory": m["territory"].values,
                                                "date": dates})


# ----------------------------------------------------------------------------- 3. drift
def drift(r_now: xr.DataArray, multiplier: xr.DataArray, r_cap: xr.DataArray,
          history: xr.Dataset, effects: EffectModel, rng: np.random.Generator) -> xr.DataArray:
    """Stage 3: R on each projected day, ``min(R now × multiplier × exp(walk), cap)``.

    Parameters
    ----------
    r_now : xarray.DataArray
        (territory, sample) R now.
    multiplier, r_cap : xarray.DataArray
        (territory, sample, date) from :func:`measure_multiplier`.
    history : xarray.Dataset
        The projected territories (coordinate ``territory_level``).
    effects : EffectModel
        ``sigma_rw``: daily SD of the unexplained random walk of log R per level.
    rng : numpy.random.Generator
        Stream of the walk's steps.

    Returns
    -------
    xarray.DataArray
        (territory, sample, date) reproduction number of admissions, dimensionless.
    """
    mult = multiplier.transpose(*_TSD)
    sig = np.array([effects.sigma_rw.get(lv, effects.sigma_rw["department"])
                    for lv in history["territory_level"].values])
    steps = rng.standard_normal(mult.shape) * sig[:, None, None]
    walk = mult.copy(data=np.cumsum(steps, axis=-1))
    r_path = np.minimum(r_now * mult * np.exp(walk), r_cap).transpose(*_TSD)
    return r_path.assign_attrs(units="1")


# ----------------------------------------------------------------------------- 4. renewal
def renewal(history: xr.Dataset, r_path: xr.DataArray, k_nb: xr.DataArray, w: np.ndarray,
            ihr: float, rng: np.random.Generator) -> xr.Dataset:
    """Stage 4: admissions ``A_t = R_t S_t/S_0 sum_s w_s A_{t-s}`` and their observation.

    Parameters
    ----------
    history : xarray.Dataset
        (territory, date) ``inc_hosp`` (admissions/day) and the ``population`` coordinate.
    r_path : xarray.DataArray
        (territory, sample, date) R on each projected day (:func:`drift`).
    k_nb : xarray.DataArray
        (territory,) negative-binomial size of daily admissions.
    w : numpy.ndarray
        (G + 1,) generation interval.
    ihr : float
        Infection-hospitalisation ratio: susceptibles are the population minus infections
        implied by past and projected admissions.
    rng : numpy.random.Generator
        Stream of the observation noise: one uniform per sample and day, shared by the
        territories (common random numbers: the observed count is monotone in the mean).

    Returns
    -------
    xarray.Dataset
        ``inc_hosp_mean`` (expected) and ``inc_hosp`` (observed, negative binomial)
        (territory, sample, date), admissions/day.
    """
    r = r_path.transpose(*_TSD)
    adm_hist = _admissions(history)
    T, S, H = r.shape
    G = len(w) - 1
    buf = np.concatenate([np.broadcast_to(adm_hist[:, None, -G:], (T, S, G)),
                          np.zeros((T, S, H))], axis=-1)
    w_rev = w[1:][::-1]  # w_G .. w_1
    pop_t = np.nan_to_num(history["population"].values.astype(float), nan=np.inf)
    s0 = np.maximum(pop_t - adm_hist.sum(axis=1) / ihr, 0.05 * pop_t)  # (T,)
    cum = np.zeros((T, S))
    r_vals = r.values
    for h in range(H):
        lam = buf[:, :, h: h + G] @ w_rev
        frac = np.clip(1.0 - cum / s0[:, None], 0.0, 1.0)
        buf[:, :, G + h] = r_vals[:, :, h] * frac * lam
        cum += buf[:, :, G + h] / ihr
    adm_mean = buf[:, :, G:]
    u = rng.uniform(size=(S, H))
    kk = k_nb.values[:, None, None]
    adm_obs = stats.nbinom.ppf(u[None], kk, kk / (kk + np.maximum(adm_mean, 1e-9)))
    units = {"units": "admissions/day"}
    return xr.Dataset({"inc_hosp_mean": (_TSD, adm_mean, units),
                       "inc_hosp": (_TSD, adm_obs, units)}, coords=r.coords)


# ----------------------------------------------------------------------------- 6. ED, mobility
def er_visits(history: xr.Dataset, daily: xr.Dataset, admissions: xr.DataArray,
              weekly: xr.Dataset | None) -> xr.DataArray:
    """Stage 6a: SurSaUD Covid ED-visit rate implied by projected admissions.

    ratio = mean rate / mean weekly admissions per 100,000 inhabitants over the last 4 complete
    weeks in the territory's région (France for France), times the projected 7-day admissions
    per 100,000 inhabitants.

    Parameters
    ----------
    history : xarray.Dataset
        (territory, date) projected territories' history (``inc_hosp``, coordinates
        ``territory_level``, ``territory_parent``, ``population``).
    daily : xarray.Dataset
        Daily cube cut at ``as_of``, every territory (admissions and population of régions).
    admissions : xarray.DataArray
        (territory, sample, date) expected admissions/day.
    weekly : xarray.Dataset or None
        Weekly cube cut at ``as_of`` with ``er_visits_covid_rate``.

    Returns
    -------
    xarray.DataArray
        (territory, sample, date) Covid ED visits per 100,000 ED visits; NaN when the weekly
        cube or the région's rate is missing.
    """
    adm = admissions.transpose(*_TSD)
    out = xr.full_like(adm, np.nan).assign_attrs(units="per 100,000 ED visits")
    if weekly is None or "er_visits_covid_rate" not in weekly:
        return out
    adm_hist, S = _admissions(history), adm.sizes["sample"]
    pops = dict(zip([str(t) for t in daily["territory"].values],
                    daily["population"].values.astype(float), strict=True))
    rows = zip(history["territory"].values, history["territory_level"].values,
               history["territory_parent"].values, strict=True)
    for i, (code, level, parent) in enumerate(rows):
        reg = str(code) if level in ("region", "country") else str(parent)
        ratio = _er_ratio(weekly["er_visits_covid_rate"], daily, reg, pops)
        if ratio is None:
            continue
        seq = np.concatenate([np.broadcast_to(adm_hist[i, -6:], (S, 6)), adm.values[i]], axis=1)
        roll = np.lib.stride_tricks.sliding_window_view(seq, 7, axis=1).sum(-1)  # (S, H)
        out.values[i] = ratio * roll / pops[str(code)] * 1e5
    return out


def _er_ratio(rate_cube: xr.DataArray, daily: xr.Dataset, reg: str,
              pops: dict[str, float]) -> float | None:
    """ED-visit rate per weekly admission per 100,000 inhabitants of a région (France) over
    its last 4 weeks with a rate; None without 4 weeks or admissions."""
    if reg not in set(str(t) for t in rate_cube["territory"].values) \
            or reg not in daily["territory"].values:
        return None
    rate = rate_cube.sel(territory=reg).to_series().dropna()
    if len(rate) < 4:
        return None
    rate = rate.iloc[-4:]
    adm_reg = daily["inc_hosp"].sel(territory=reg).to_series()
    weekly_adm = [adm_reg[(adm_reg.index > d - pd.Timedelta(days=7)) &
                          (adm_reg.index <= d)].sum() for d in rate.index]
    per100k = np.mean(weekly_adm) / pops[reg] * 1e5
    if per100k <= 0:
        return None
    return float(rate.mean()) / per100k


def mobility(history: xr.Dataset, multiplier: xr.Dataset, effects: EffectModel,
             rng: np.random.Generator, as_of: pd.Timestamp) -> xr.DataArray:
    """Stage 6b: transit-stations mobility index under the scenario.

    Last 7-day mean, plus the learned response of mobility to the change of measures from the
    day before ``as_of``, plus explicit mobility effects.

    Parameters
    ----------
    history : xarray.Dataset
        (territory, date) with ``mobility_transit_stations`` (% vs Jan-Feb 2020) when present.
    multiplier : xarray.Dataset
        From :func:`measure_multiplier`: ``covariates``, ``covariates_status_quo``
        (territory, infection_date, covariate) and ``mobility_shift`` (territory, sample,
        infection_date).
    effects : EffectModel
        Mobility response to each covariate (mean and covariance, points).
    rng : numpy.random.Generator
        Stream of the response draws (one per sample).

    Returns
    -------
    xarray.DataArray
        (territory, sample, date) % vs Jan-Feb 2020, from ``as_of``; NaN without mobility.
    """
    shift = (multiplier["mobility_shift"].sel({INFECTION_DATE: slice(as_of, None)})
             .rename({INFECTION_DATE: "date"}).transpose(*_TSD))
    units = {"units": "% vs Jan-Feb 2020 baseline"}
    if "mobility_transit_stations" not in history:
        return xr.full_like(shift, np.nan).assign_attrs(units)
    v = history["mobility_transit_stations"].values.astype(float)[:, -7:]
    with np.errstate(all="ignore"):
        base = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in v])
    resp = rng.multivariate_normal(effects.mobility_response_mean, effects.mobility_response_cov,
                                   size=shift.sizes["sample"], method="cholesky")  # (S, C)
    # Change of the covariates from the status quo of the day before as_of.
    before = multiplier["covariates_status_quo"].sel(
        {INFECTION_DATE: as_of - pd.Timedelta(days=1)}).drop_vars(INFECTION_DATE)
    change = (multiplier["covariates"].sel({INFECTION_DATE: slice(as_of, None)}) - before
              ).transpose("territory", INFECTION_DATE, "covariate")
    response = np.einsum("thc,sc->tsh", change.values, resp)  # (T, S, H) points
    return shift.copy(data=base[:, None, None] + response + shift.values).assign_attrs(units)


# ----------------------------------------------------------------------------- capacity
def capacity(scenario: Scenario, history: xr.Dataset, yearly: xr.Dataset | None) -> xr.Dataset:
    """Beds per territory: the scenario's numbers, else DREES adult ICU beds for ``icu``.

    Returns
    -------
    xarray.Dataset
        ``hosp_capacity`` and ``icu_capacity`` (territory,), beds; NaN where none is
        configured.
    """
    codes = [str(t) for t in history["territory"].values]
    out = xr.Dataset(coords={"territory": codes})
    for ind in OCCUPANCY:
        spec = scenario.capacity.get(ind, "cube" if ind == "icu" else None)
        vals = np.full(len(codes), np.nan)
        for i, code in enumerate(codes):
            v = spec.get(code, spec.get("default", "cube" if ind == "icu" else None)) \
                if isinstance(spec, dict) else spec
            if v == "cube":
                v = _cube_beds(yearly, code, scenario.as_of) if ind == "icu" else None
            if v is not None:
                vals[i] = float(v)
        out[f"{ind}_capacity"] = ("territory", vals, {"units": "beds"})
    return out


def _cube_beds(yearly: xr.Dataset | None, code: str, as_of: pd.Timestamp) -> float | None:
    if yearly is None or "icu_beds_adult" not in yearly or code not in yearly["territory"]:
        return None
    s = yearly["icu_beds_adult"].sel(territory=code).to_series()
    s = s[s.index < as_of].dropna()
    return float(s.iloc[-1]) if len(s) else None
