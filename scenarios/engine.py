"""Scenario engine: R(t) now, interventions, renewal projection, beds, capacity.

One scenario is projected for all its territories and samples at once, over labelled arrays
(dimensions ``territory``, ``sample``, ``date``; :mod:`scenarios.stages` names them all), in six
stages, one function each:

1. R now (:func:`scenarios.stages.draw_r_now`): Cori posterior over the 7 days before ``as_of``
   from daily cases where they exist (France, régions; a département takes its région's case R
   with its own, shrunk, deviation measured on admissions: :mod:`scenarios.rnow`), from
   admissions otherwise (:mod:`scenarios.rt`), one draw per sample.
2. Multiplier of R (:func:`scenarios.stages.measure_multiplier`) on infection dates:
   ``exp(beta · x(u) + custom(u))`` where ``x`` are the measure covariates (history from the
   measures table, status quo carried forward, then the scenario's interventions:
   :mod:`scenarios.interventions`) and ``beta`` are draws of the effects learned from history
   (:mod:`scenarios.history`). Transferred to admission dates through the
   infection-to-admission delay and normalised on the 7-day window behind R^A now, so that a
   curfew decided 3 days before ``as_of`` — already in force but not yet visible in admissions —
   still lowers the status quo. Vaccination and variant levers (:mod:`scenarios.levers`) add
   to that multiplier; a variant also raises the R cap.
3. An unexplained random walk of log R (SD learned from history) widens the fan with time
   (:func:`scenarios.stages.drift`).
4. Renewal equation on admissions (:func:`scenarios.stages.renewal`):
   ``A_t = R^A_t sum_s w_s A_{t-s}``; negative-binomial observation noise for daily counts
   (dispersion from the last 8 weeks).
5. Occupancy (:func:`scenarios.occupancy.occupancy`): admissions convolved with length-of-stay
   survival curves (scale fitted to the stocks and flows of the last 60 days) plus the decaying
   gap between observed and modelled stock on the day before ``as_of``; ICU admissions = share
   of admissions going to ICU.
6. Emergency visits (:func:`scenarios.stages.er_visits`: SurSaUD rate per 100,000 ED visits) by
   the ratio of the rate to admissions per capita over the last 4 complete weeks in the
   région; transit mobility index (:func:`scenarios.stages.mobility`) from the learned response
   of mobility to measures.

The result is a :class:`scenarios.projection.Projection`, summarised by
:func:`scenarios.projection.summarise` and :func:`scenarios.projection.quantile_table`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from scenarios.history import EffectModel, fit_effects
from scenarios.measures import load_measures
from scenarios.occupancy import fit_los_factor, occupancy
from scenarios.params import EpiParameters
from scenarios.projection import (
    INDICATORS,
    QUANTILES,
    Projection,
    quantile_table,
    summarise,
)
from scenarios.scenario import Scenario, resolve
from scenarios.schema import load_definition, validate_definition
from scenarios.stages import (
    Streams,
    capacity,
    draw_r_now,
    drift,
    er_visits,
    measure_multiplier,
    mobility,
    renewal,
    select_history,
)

__all__ = ["INDICATORS", "QUANTILES", "Projection", "fit_los_factor", "get_effects", "project",
           "quantile_table", "run_scenario", "summarise"]

log = logging.getLogger(__name__)

_EFFECT_CACHE: OrderedDict[tuple, EffectModel] = OrderedDict()


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
    """Sample the trajectories of a resolved scenario (the six stages of the module docstring).

    Parameters
    ----------
    scenario : Scenario
        Resolved definition (absolute dates).
    daily : xarray.Dataset
        (territory, date) daily cube cut at ``as_of`` (dates < as_of), all territories.
    measures : pandas.DataFrame
        Measures table.
    effects : EffectModel
        Effects learned from history before ``as_of``.
    params : EpiParameters
        Epidemiological parameters.
    yearly, weekly : xarray.Dataset, optional
        Yearly (capacity) and weekly (emergency visits) cubes.

    Returns
    -------
    Projection
        Trajectories (territory, sample, date) from ``as_of`` over ``horizon_days`` days.
    """
    streams = Streams.from_seed(scenario.seed)
    w = params.generation_interval()
    history, skipped = select_history(scenario, daily)
    r_now, r_basis = draw_r_now(scenario, daily, history, w, streams.r_now, streams.cases)
    mult, levers = measure_multiplier(scenario, daily, history, measures, effects, params,
                                      streams)
    r_path = drift(r_now["r_now"], mult["multiplier"], mult["r_cap"], history, effects,
                   streams.drift)
    adm = renewal(history, r_path, r_now["nb_size"], w, params.ihr, streams.noise)
    beds = occupancy(history, adm["inc_hosp_mean"], params, streams.los, streams.icu)
    data = xr.Dataset({
        **adm.data_vars, **beds.data_vars,
        "er_visits_covid_rate": er_visits(history, daily, adm["inc_hosp_mean"], weekly),
        "mobility_transit_stations": mobility(history, mult, effects, streams.mobility,
                                              scenario.as_of),
        "r_now": r_now["r_now"], "r_now_admissions": r_now["r_now_admissions"],
        **capacity(scenario, history, yearly).data_vars,
    })
    territory_coords = {k: v for k, v in history.coords.items() if "date" not in v.dims}
    return Projection(data.assign_coords(territory_coords), skipped, r_basis, levers)


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
        Mapping, path of a YAML file, or a resolved :class:`~scenarios.scenario.Scenario`.
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
    scenario, cube, opened = _resolve(definition, cube, as_of, territories, settings,
                                      n_samples)
    scenario = _with_overrides(scenario, n_samples, rt_basis, rt_pool)
    if opened:
        cube, yearly, weekly = _open_cubes(scenario.as_of, settings, yearly, weekly)
    daily = cube.sel(date=cube["date"] < np.datetime64(scenario.as_of))
    if weekly is not None:
        weekly = weekly.sel(date=weekly["date"] < np.datetime64(scenario.as_of))
    measures = measures if measures is not None else load_measures()
    params = EpiParameters().with_overrides(scenario.parameters)
    effects = get_effects(cube, measures, scenario.as_of, params, scenario.prior_policy)
    proj = project(scenario, daily, measures, effects, params, yearly, weekly)
    result = _result(scenario, cube, daily, params, effects, proj, include_trajectories)
    result["timing_s"] = round(time.perf_counter() - t0, 3)
    if return_projection:
        result["_projection"] = proj
    return result


def _resolve(definition: dict[str, Any] | str | Any, cube: xr.Dataset | None,
             as_of: str | pd.Timestamp | None, territories: list[str] | None,
             settings: Any, n_samples: int | None = None
             ) -> tuple[Scenario, xr.Dataset | None, bool]:
    """The resolved scenario (a definition's ``n_samples`` override checked as a file's is),
    the cube (opened when needed for a default ``as_of``) and whether cubes are to be opened
    from the store (no cube given)."""
    opened = cube is None
    if isinstance(definition, Scenario):
        if as_of is not None or territories:
            raise ValueError("give as_of/territories in the definition, not with a Scenario")
        return definition, cube, opened
    if isinstance(definition, str | Path):
        definition = load_definition(definition)
    if n_samples is not None:  # checked as a file's would be, before any cube is opened
        definition = {**definition, "n_samples": n_samples}
        validate_definition({k: v for k, v in definition.items() if k != "_source"},
                            definition.get("_source", "<definition>"))
    if as_of is None and not definition.get("as_of"):
        # No date anywhere: start the day after the last admissions of the cube.
        if cube is None:
            cube = _open("daily", None, settings)
            opened = True
        as_of = _day_after_last(cube)
    return resolve(definition, as_of=as_of, territories=territories), cube, opened


def _with_overrides(scenario: Scenario, n_samples: int | None, rt_basis: str | None,
                    rt_pool: bool | None) -> Scenario:
    """The scenario with ``run_scenario``'s overrides of its number of samples and R now."""
    if n_samples:
        scenario = replace(scenario, n_samples=int(n_samples))
    if rt_basis:
        if rt_basis not in ("cases", "admissions"):
            raise ValueError(f"rt_basis must be 'cases' or 'admissions', not {rt_basis!r}")
        scenario = replace(scenario, rt_basis=rt_basis)
    if rt_pool is not None:
        scenario = replace(scenario, rt_pool=bool(rt_pool))
    return scenario


def _open_cubes(as_of: pd.Timestamp, settings: Any, yearly: xr.Dataset | None,
                weekly: xr.Dataset | None) -> tuple[xr.Dataset, Any, Any]:
    """The daily cube of the vintage as of ``as_of`` and, unless given, its yearly and weekly
    cubes (None when the vintage has none)."""
    cube = _open("daily", as_of, settings)  # the vintage as of, cut at as_of
    if cube is None:
        raise RuntimeError("no cube given and features.store.open_cube is unavailable")
    yearly = yearly if yearly is not None else _open("yearly", as_of, settings)
    weekly = weekly if weekly is not None else _open("weekly", as_of, settings)
    return cube, yearly, weekly


def _result(scenario: Scenario, cube: xr.Dataset, daily: xr.Dataset, params: EpiParameters,
            effects: EffectModel, proj: Projection,
            include_trajectories: bool) -> dict[str, Any]:
    """The JSON-able result of :func:`run_scenario` (without its timing)."""
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
    return result
