"""Measures and interventions of a scenario on infection dates (stage 2 of :mod:`scenarios.engine`).

The status quo is the measures table's covariates (:mod:`scenarios.measures`: measures in force
the day before ``as_of`` carried forward); each intervention of the scenario then either raises
(a measure) or lowers (a relaxation) covariates over its ramp, or adds an explicit effect: a
change of log R, of mobility points or of stringency points, turned into log R by the
elasticities learned from history. An intervention covering part of a région or of France acts
in proportion to the population it covers.

Every array here is labelled: dimensions ``territory``, ``sample``, ``infection_date`` and
``covariate`` (:data:`scenarios.measures.COVARIATES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from scenarios.history import EffectModel
from scenarios.measures import (
    COVARIATES,
    LEVELS,
    department_covariates,
    measure_covariate,
    territory_covariates,
)
from scenarios.scenario import Intervention

INFECTION_DATE = "infection_date"


@dataclass(frozen=True)
class Hierarchy:
    """Every territory of the cube: codes, levels, parents and populations.

    Attributes
    ----------
    codes, levels : list of str
        Territory codes and their levels (``department``, ``region``, ``country``...).
    parents : dict
        Code -> parent code (``''`` for France).
    population : dict
        Code -> inhabitants (NaN when unknown).
    departments : list of str
        The codes at level ``department``, in cube order.
    """

    codes: list[str]
    levels: list[str]
    parents: dict[str, str]
    population: dict[str, float]
    departments: list[str]

    @classmethod
    def of(cls, cube: xr.Dataset) -> Hierarchy:
        """The hierarchy of a cube's ``territory`` coordinates."""
        codes = [str(t) for t in cube["territory"].values]
        levels = [str(v) for v in cube["territory_level"].values]
        parents = dict(zip(codes, [str(v) for v in cube["territory_parent"].values], strict=True))
        population = dict(zip(codes, cube["population"].values.astype(float), strict=True))
        deps = [c for c, lv in zip(codes, levels, strict=True) if lv == "department"]
        return cls(codes, levels, parents, population, deps)


@dataclass(frozen=True)
class EffectDraws:
    """Per-sample draws of what an intervention does to log R.

    Attributes
    ----------
    beta : xarray.DataArray
        (sample, covariate) log-R effect of each measure covariate (censored at 0).
    mobility_elasticity, stringency_elasticity : xarray.DataArray
        (sample,) change of log R per point of the mobility or stringency index.
    """

    beta: xr.DataArray
    mobility_elasticity: xr.DataArray
    stringency_elasticity: xr.DataArray

    @classmethod
    def draw(cls, effects: EffectModel, rng_beta: np.random.Generator,
             rng_elasticity: np.random.Generator, n: int) -> EffectDraws:
        """``n`` draws: the measure effects from ``rng_beta``, then the mobility and the
        stringency elasticities (in that order) from ``rng_elasticity``."""
        beta = xr.DataArray(effects.sample_beta(rng_beta, n), dims=("sample", "covariate"),
                            coords={"covariate": list(COVARIATES)}, attrs={"units": "log R"})
        mob = rng_elasticity.normal(*effects.mobility_elasticity, size=n)
        strg = rng_elasticity.normal(*effects.stringency_elasticity, size=n)
        per_point = {"units": "log R per index point"}
        return cls(beta, xr.DataArray(mob, dims="sample", attrs=per_point),
                   xr.DataArray(strg, dims="sample", attrs=per_point))


def ramp(dates: pd.DatetimeIndex, iv: Intervention, horizon_end: pd.Timestamp) -> np.ndarray:
    """Intensity 0..1 of an intervention on each date: linear ramp over ``ramp_days`` from the
    start, 1 until the (inclusive) end, 0 after."""
    end = iv.end if iv.end is not None else horizon_end
    d = (dates - iv.start).days.to_numpy().astype(float)
    val = np.clip((d + 1) / (iv.ramp_days + 1), 0.0, 1.0) if iv.ramp_days > 0 else (
        d >= 0).astype(float)
    val[(d < 0) | (dates > end)] = 0.0
    return val


def coverage(iv: Intervention, code: str, level: str, hierarchy: Hierarchy) -> float:
    """Share of a territory's population an intervention applies to (1 for a département
    inside the intervention's territories, a population share for a région or France)."""
    if not iv.territories:
        return 1.0
    parents, deps = hierarchy.parents, hierarchy.departments

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
    w = np.nan_to_num(np.array([hierarchy.population.get(d, 0.0) for d in members], dtype=float))
    if not members or w.sum() <= 0:
        return 0.0
    return float(sum(wi for d, wi in zip(members, w, strict=True) if dep_in(d)) / w.sum())


def status_quo_covariates(measures: pd.DataFrame, hierarchy: Hierarchy, territories: xr.Dataset,
                          u_dates: pd.DatetimeIndex, as_of: pd.Timestamp) -> xr.DataArray:
    """Measure covariates of the projected territories without any new intervention.

    Parameters
    ----------
    measures : pandas.DataFrame
        The measures table (:func:`scenarios.measures.load_measures`).
    hierarchy : Hierarchy
        Every territory of the cube (a région or France averages its départements).
    territories : xarray.Dataset
        The projected territories' history (coordinates ``territory``, ``territory_level``).
    u_dates : pandas.DatetimeIndex
        Infection dates.
    as_of : pandas.Timestamp
        Measures known before it only; those in force the day before are carried forward.

    Returns
    -------
    xarray.DataArray
        (territory, infection_date, covariate), share of the population under each measure
        (0..1), with the ``territory_level`` coordinate.
    """
    deps = hierarchy.departments
    dep_x = department_covariates(measures, deps, u_dates, as_of=as_of)
    codes = [str(t) for t in territories["territory"].values]
    levels = [str(v) for v in territories["territory_level"].values]
    x = territory_covariates(dep_x, deps, codes, levels, hierarchy.parents, hierarchy.population)
    return xr.DataArray(x, dims=("territory", INFECTION_DATE, "covariate"),
                        coords={"territory": codes, "territory_level": ("territory", levels),
                                INFECTION_DATE: u_dates, "covariate": list(COVARIATES)},
                        attrs={"units": "share of the population (0-1)"})


def apply_interventions(interventions: tuple[Intervention, ...], x_base: xr.DataArray,
                        hierarchy: Hierarchy, draws: EffectDraws, rng: np.random.Generator,
                        horizon_end: pd.Timestamp) -> xr.Dataset:
    """The scenario's covariates and explicit effects on infection dates.

    Parameters
    ----------
    interventions : tuple of Intervention
        In the scenario's order (each explicit transmission effect with an SD draws from
        ``rng`` in that order).
    x_base : xarray.DataArray
        (territory, infection_date, covariate) status-quo covariates
        (:func:`status_quo_covariates`), with a ``territory_level`` coordinate.
    hierarchy : Hierarchy
        Every territory of the cube (coverage of a région or France).
    draws : EffectDraws
        Elasticities per sample.
    rng : numpy.random.Generator
        Stream of the explicit transmission effects' uncertainty.
    horizon_end : pandas.Timestamp
        Last projected day (end of an open-ended intervention).

    Returns
    -------
    xarray.Dataset
        ``covariates`` (territory, infection_date, covariate), 0..1; ``log_r_explicit``
        (territory, sample, infection_date), log R added by explicit effects;
        ``mobility_shift`` (territory, sample, infection_date), transit mobility points added by
        explicit mobility effects.
    """
    u_dates = pd.DatetimeIndex(x_base[INFECTION_DATE].values)
    codes = [str(t) for t in x_base["territory"].values]
    levels = [str(v) for v in x_base["territory_level"].values]
    n_s = draws.beta.sizes["sample"]
    x_scen = x_base.values.copy()
    custom = np.zeros((len(codes), n_s, len(u_dates)))
    mob_shift = np.zeros((len(codes), n_s, len(u_dates)))
    for iv in interventions:
        cover = np.array([coverage(iv, c, levels[i], hierarchy) for i, c in enumerate(codes)])
        rows = [i for i in range(len(codes)) if cover[i] > 0]
        if not rows:
            continue
        # (rows, U) intensity: the ramp times the share of the territory covered. For a région
        # or France partly covered, a covariate becomes a population share (as in history) and
        # an explicit effect is scaled by that share (first-order mixture).
        ramp_r = ramp(u_dates, iv, horizon_end)[None, :] * cover[rows][:, None]
        if isinstance(iv.effect, dict):
            _explicit_effect(iv.effect, rows, ramp_r, draws, rng, custom, mob_shift)
        else:
            _switch_covariates(iv, rows, ramp_r, x_scen)
    dims = ("territory", "sample", INFECTION_DATE)
    return xr.Dataset(
        {"covariates": x_base.copy(data=x_scen),
         "log_r_explicit": (dims, custom, {"units": "log R"}),
         "mobility_shift": (dims, mob_shift, {"units": "mobility index points"})},
        coords={"territory": codes, INFECTION_DATE: u_dates})


def _switch_covariates(iv: Intervention, rows: list[int], ramp_r: np.ndarray,
                       x_scen: np.ndarray) -> None:
    """A measure raises its rung (and every rung below it) to the ramp; a relaxation lowers
    the covariates it lifts to one minus the ramp. In place on ``x_scen`` (T, U, C)."""
    if iv.type == "relaxation":
        for c in iv.lifts or (*LEVELS, "school_closure"):
            j = COVARIATES.index(c)
            x_scen[rows, :, j] = np.minimum(x_scen[rows, :, j], 1.0 - ramp_r)
        return
    cov = measure_covariate(iv.type, iv.hour) if iv.type != "custom" else None
    if cov is None:
        return
    js = [COVARIATES.index(c) for c in LEVELS[: LEVELS.index(cov) + 1]] \
        if cov in LEVELS else [COVARIATES.index(cov)]
    for j in js:
        x_scen[rows, :, j] = np.maximum(x_scen[rows, :, j], ramp_r)


def _explicit_effect(eff: dict[str, float], rows: list[int], ramp_r: np.ndarray,
                     draws: EffectDraws, rng: np.random.Generator, custom: np.ndarray,
                     mob_shift: np.ndarray) -> None:
    """Add an explicit effect to the log R (``custom``) and mobility (``mob_shift``) arrays
    (T, S, U), in place: a relative change of R (with an optional SD drawn per sample), a
    change of mobility or of stringency points times the sample's elasticity."""
    n_s = custom.shape[1]
    if "transmission" in eff:
        sd = float(eff.get("transmission_sd", 0.0))
        lr = np.log1p(eff["transmission"]) + sd * rng.standard_normal(n_s)
        custom[rows] += lr[None, :, None] * ramp_r[:, None, :]
    if "mobility" in eff:
        mob_shift[rows] += eff["mobility"] * ramp_r[:, None, :]
        mob_el = draws.mobility_elasticity.values
        custom[rows] += (mob_el[:, None] * eff["mobility"])[None] * ramp_r[:, None, :]
    if "stringency" in eff:
        str_el = draws.stringency_elasticity.values
        custom[rows] += (str_el[:, None] * eff["stringency"])[None] * ramp_r[:, None, :]
