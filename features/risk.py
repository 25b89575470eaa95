"""Risk level per territory and day, from configurable thresholds (French alert zones of 2020).

Default thresholds (``features/risk_thresholds.yaml``): the alert levels by territory announced
by the French health minister on 23 September 2020 (REFERENCE-EPI.md §3; press reports, e.g.
CNews 2020-09-24, franceinfo 2020-10-03; the ministry's own document was not retrieved):

=====  ===================  ==========================================================
level  label                every criterion must hold (strictly over the threshold)
=====  ===================  ==========================================================
0      Vigilance            —
1      Alerte               incidence > 50 / 100,000 over 7 days
2      Alerte renforcée     incidence > 150, and > 50 among people 65+
3      Alerte maximale      incidence > 250, > 100 among people 65+, and Covid patients
                            holding > 30 % of the région's ICU beds
=====  ===================  ==========================================================

Inputs, per (territory, day): ``incidence_rate_7d`` and ``incidence_rate_7d_65_plus`` from the
daily cube (the territory's own values; 65+ incidence is published only for the 22 métropoles,
2020-Q4; départements have incidence only in Bourgogne-Franche-Comté until 2021-01; where a
territory has no ``incidence_rate_7d`` its ``incidence_rate_7d_estimated`` is used, from the
screened positive tests of the windows ending 2021-06-06 onwards, and ``incidence_rate_7d_origin``
says so: :data:`ESTIMATES`; the 65+ incidence is never estimated, so from level 2 up a
département's level stays a range), and ``icu_occupancy`` =
100 × ``icu`` / ``icu_beds_adult`` of the territory's région (the ICU criterion of 2020 was
regional), with the DREES adult-ICU capacity of the latest 1 January on or before the day
(yearly cube). ``icu`` counts every Covid patient in critical care (SPF ``rea``: réanimation,
soins intensifs, surveillance continue) while the capacity counts adult réanimation beds before
any surge, so the share can exceed 100 % (it did in spring 2020); on 2020-09-29 it gives 33.6 %
for Île-de-France, the ≈ 33 % the press reported that day.

Missing inputs. Each criterion is met (1), not met (0) or unknown (NaN, input missing). A level
is *reached* when all its criteria are met and *ruled out* when one is not met. ``risk_level``
is the highest level reached (0 if none), ``risk_level_max`` the highest not ruled out: with
every input known they are equal (``risk_complete``); otherwise the true level lies between
them. ``risk_level`` is -1 (unknown) when no criterion can be evaluated at all.

Thresholds are configurable: a YAML file of the same shape named by ``VIGIE_RISK_THRESHOLDS``
(:attr:`features.settings.Settings.risk_thresholds`), read and validated on load by
:mod:`features.risk_thresholds` (:class:`RiskThresholdsError` names the file, line, field, what
was expected and found).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from features.risk_thresholds import (
    DEFAULT_THRESHOLDS,
    ICU_OCCUPANCY,
    KNOWN_INPUTS,
    LEVEL_LABELS,
    LEVEL_UNKNOWN,
    LEVELS,
    SCOPES,
    Criterion,
    RiskInput,
    RiskThresholds,
    RiskThresholdsError,
    load_thresholds,
    read_thresholds,
)
from features.territories import ancestor_at

#: The thresholds' names callers take from here (:mod:`features.risk_thresholds`), and the
#: assessment's.
__all__ = [
    "DEFAULT_THRESHOLDS", "ESTIMATES", "ESTIMATES_FR", "ICU_OCCUPANCY", "KNOWN_INPUTS",
    "LEVELS", "LEVEL_LABELS", "LEVEL_UNKNOWN", "ORIGIN_ESTIMATED", "ORIGIN_NAMES", "ORIGIN_NONE",
    "ORIGIN_OBSERVED", "SCOPES", "Criterion", "RiskInput", "RiskThresholds",
    "RiskThresholdsError", "assess", "describe", "label", "load_thresholds", "read_thresholds",
    "region_rows",
]

#: Input → daily cube variable estimating it, used where the territory has no value of its own
#: that day (départements have no daily cases: their incidence is estimated from screened
#: positive tests, :mod:`features.incidence_estimate`).
ESTIMATES: dict[str, str] = {"incidence_rate_7d": "incidence_rate_7d_estimated"}
#: What :data:`ESTIMATES` do, for the methods page.
ESTIMATES_FR: dict[str, str] = {
    "incidence_rate_7d": "à défaut de valeur propre (départements), estimé à partir des tests "
                         "positifs du criblage convertis en personnes avec le ratio de la région"}
#: Codes of ``<input>_origin``: no value, the territory's own (published or derived from its
#: counts), an estimate (:data:`ESTIMATES`).
ORIGIN_NONE, ORIGIN_OBSERVED, ORIGIN_ESTIMATED = 0, 1, 2
#: Dims of every (territory, date) variable of :func:`assess`.
DIMS = ("territory", "date")
#: ``<input>_origin`` code → the word the API serves.
ORIGIN_NAMES: dict[int, str | None] = {ORIGIN_NONE: None, ORIGIN_OBSERVED: "observed",
                                       ORIGIN_ESTIMATED: "estimated_from_screening"}


def assess(daily: xr.Dataset, yearly: xr.Dataset | None,
           thresholds: RiskThresholds | None = None) -> xr.Dataset:
    """Risk level of every territory on every day of ``daily``.

    Parameters
    ----------
    daily:
        Daily cube ``(territory, date)`` (any subset of dates, e.g. only the latest), with
        the coordinates ``territory_level`` and ``territory_parent`` (for the région scope).
    yearly:
        Yearly cube with ``icu_beds_adult`` (for ``icu_occupancy``); None: occupancy unknown.
    thresholds:
        Default: :func:`load_thresholds`.

    Returns
    -------
    xarray.Dataset
        Dims ``(territory, date)`` of ``daily``:

        - ``risk_level`` int8: -1 unknown (no criterion evaluable), 0..3 highest level reached;
        - ``risk_level_max`` int8: highest level the missing inputs still allow (0..3);
        - ``risk_complete`` bool: every input needed to decide the level was known;
        - ``criteria_evaluated`` int8: how many criteria could be evaluated;
        - ``criterion_<level>_<input>`` float: 1 met, 0 not met, NaN input missing;
        - each input (``incidence_rate_7d``, ``incidence_rate_7d_65_plus``, ``icu_occupancy``
          in %, and ``icu``, ``icu_beds_adult`` behind the occupancy), the values used, after
          scope (a région's value for ``region`` inputs), with ``<input>_from`` (territory) the
          code it was taken from (``""``: none);
        - ``<input>_origin`` int8 (territory, date): :data:`ORIGIN_NONE` (missing),
          :data:`ORIGIN_OBSERVED` (the territory's own value) or :data:`ORIGIN_ESTIMATED` (an
          estimate from :data:`ESTIMATES`, used only where its own value is missing: a
          département's ``incidence_rate_7d_estimated`` from screened positive tests);
        - ``inputs_missing`` str: comma-separated inputs missing that day (``""``: none).

        Attrs: thresholds name, path, citation, and the level labels.
    """
    thresholds = thresholds or load_thresholds()
    daily = daily.transpose("territory", "date")
    inputs = _gather_inputs(daily, yearly, thresholds)
    met = {c: _criterion(inputs.values[c.input], c.threshold) for c in thresholds.criteria}
    level, level_max, evaluated = _levels(met, thresholds, inputs.shape)
    out = xr.Dataset(coords={k: v for k, v in daily.coords.items()})
    _add_levels(out, thresholds, level, level_max, evaluated)
    _add_criteria(out, thresholds, met)
    _add_inputs(out, thresholds, inputs)
    out.attrs = {"thresholds": thresholds.name, "thresholds_path": thresholds.path,
                 "source": thresholds.citation,
                 "level_labels": "; ".join(f"{k} {v}" for k, v in LEVEL_LABELS.items())}
    return out


@dataclass
class _Inputs:
    """The inputs of the criteria on the (territory, date) ``shape`` of the daily cube, after
    scope: ``values`` by input (the ICU occupancy in %), ``extra`` the ``icu`` and
    ``icu_beds_adult`` behind it, ``estimated`` where an input is an estimate
    (:data:`ESTIMATES`), ``origin`` the territory code each input is taken from (``""``: none)."""

    shape: tuple[int, int]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    estimated: dict[str, np.ndarray] = field(default_factory=dict)
    origin: dict[str, np.ndarray] = field(default_factory=dict)


def _gather_inputs(daily: xr.Dataset, yearly: xr.Dataset | None, thresholds: RiskThresholds
                   ) -> _Inputs:
    """Each input of ``thresholds`` for every territory: its own row, or its région's for a
    ``region`` scope (NaN where there is none); an estimate where the value is missing."""
    codes = [str(c) for c in daily["territory"].values]
    out = _Inputs((len(codes), daily.sizes["date"]))
    region_of = region_rows(daily, codes)
    own = np.arange(len(codes))
    for name, spec in thresholds.inputs.items():
        rows = region_of if spec.scope == "region" else own
        if name == ICU_OCCUPANCY:
            occupancy, icu, beds = _icu_occupancy(daily, yearly)
            out.extra["icu"], out.extra["icu_beds_adult"] = _take(icu, rows), _take(beds, rows)
            out.values[name] = _take(occupancy, rows)
        elif name in daily:
            out.values[name] = _take(daily[name].values.astype(float), rows)
        else:
            out.values[name] = np.full(out.shape, np.nan)
        if ESTIMATES.get(name) in daily:
            guess = _take(daily[ESTIMATES[name]].values.astype(float), rows)
            out.estimated[name] = np.isnan(out.values[name]) & ~np.isnan(guess)
            out.values[name] = np.where(out.estimated[name], guess, out.values[name])
        out.origin[name] = np.array([codes[r] if r >= 0 else "" for r in rows], dtype=object)
    return out


def _levels(met: dict[Criterion, np.ndarray], thresholds: RiskThresholds,
            shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: the highest level reached (-1 when no criterion is evaluable), the highest
    the missing inputs do not rule out, and how many criteria were evaluable (int8 arrays)."""
    level = np.zeros(shape, dtype=np.int8)
    level_max = np.zeros(shape, dtype=np.int8)
    for k in LEVELS[1:]:
        states = [met[c] for c in thresholds.of_level(k)]
        if not states:
            continue
        reached = np.logical_and.reduce([s == 1 for s in states])
        ruled_out = np.logical_or.reduce([s == 0 for s in states])
        level = np.where(reached, np.int8(k), level)
        level_max = np.where(~ruled_out, np.int8(k), level_max)
    evaluated = np.sum([~np.isnan(s) for s in met.values()], axis=0).astype(np.int8) \
        if met else np.zeros(shape, dtype=np.int8)
    level = np.where(evaluated > 0, level, np.int8(LEVEL_UNKNOWN)).astype(np.int8)
    level_max = np.where(evaluated > 0, np.maximum(level_max, level),
                         np.int8(LEVELS[-1])).astype(np.int8)
    return level, level_max, evaluated


def _add_levels(out: xr.Dataset, thresholds: RiskThresholds, level: np.ndarray,
                level_max: np.ndarray, evaluated: np.ndarray) -> None:
    """``risk_level``, ``risk_level_max``, ``risk_complete`` and ``criteria_evaluated``."""
    out["risk_level"] = (DIMS, level, {
        "units": "level", "description": "niveau de risque : -1 inconnu, 0 Vigilance, 1 Alerte, "
        "2 Alerte renforcée, 3 Alerte maximale (plus haut niveau atteint)"})
    out["risk_level_max"] = (DIMS, level_max, {
        "units": "level", "description": "plus haut niveau que les données manquantes "
        "n'excluent pas"})
    out["risk_complete"] = (DIMS, (level == level_max) & (evaluated > 0),
                            {"description": "toutes les données nécessaires étaient connues"})
    out["criteria_evaluated"] = (DIMS, evaluated, {
        "units": "criteria", "description": f"critères évaluables sur "
        f"{len(thresholds.criteria)}"})


def _add_criteria(out: xr.Dataset, thresholds: RiskThresholds,
                  met: dict[Criterion, np.ndarray]) -> None:
    """One ``criterion_<level>_<input>`` variable per criterion: 1 met, 0 not, NaN unknown."""
    for c, state in met.items():
        spec = thresholds.inputs[c.input]
        out[c.variable] = (DIMS, state, {
            "level": c.level, "input": c.input, "threshold": c.threshold, "comparison": ">",
            "units": spec.units, "description": f"{spec.label} > {c.threshold:g} "
            f"({LEVEL_LABELS[c.level]}) : 1 oui, 0 non, vide si donnée manquante"})


def _add_inputs(out: xr.Dataset, thresholds: RiskThresholds, inputs: _Inputs) -> None:
    """The inputs used (and those behind the ICU occupancy), where each was taken from, its
    origin code per cell, and the names of the inputs missing per cell."""
    for name, array in {**inputs.values, **inputs.extra}.items():
        spec = thresholds.inputs.get(name)
        attrs = ({"units": spec.units, "description": spec.label, "scope": spec.scope} if spec
                 else {"units": "beds" if name != "icu" else "patients",
                       "description": f"{name} behind icu_occupancy"})
        if name in inputs.estimated:
            attrs["estimate"] = ESTIMATES[name]
        out[name] = (DIMS, array, attrs)
    for name, codes_used in inputs.origin.items():
        out[f"{name}_from"] = ("territory", codes_used,
                               {"description": f"territory whose {name} is used"})
    for name, array in inputs.values.items():
        code = np.where(np.isnan(array), np.int8(ORIGIN_NONE), np.int8(ORIGIN_OBSERVED))
        if name in inputs.estimated:
            code[inputs.estimated[name]] = ORIGIN_ESTIMATED
        out[f"{name}_origin"] = (DIMS, code.astype(np.int8), {
            "units": "code", "description": f"origin of {name}: 0 none, 1 the territory's own "
            "value (published or derived from its counts)"
            + (f", 2 estimated ({ESTIMATES[name]})" if name in ESTIMATES else "")})
    out["inputs_missing"] = (DIMS, _missing_names(inputs.values, inputs.shape),
                             {"description": "données d'entrée manquantes ce jour"})


def label(level: int, level_max: int | None = None) -> str:
    """French label of a level; with an upper bound above it, the range (data incomplete)."""
    if level == LEVEL_UNKNOWN or level_max is None or level_max <= level:
        return LEVEL_LABELS[int(level)]
    return (f"{LEVEL_LABELS[int(level)]} à {LEVEL_LABELS[int(level_max)]} "
            "(données incomplètes)")


def describe(thresholds: RiskThresholds) -> dict:
    """The thresholds for the methods page: levels, criteria, units, source (French text)."""
    return {
        "name": thresholds.name,
        "source": {"citation": thresholds.citation, "urls": list(thresholds.urls),
                   "notes": thresholds.notes},
        "labels": {str(k): v for k, v in LEVEL_LABELS.items()},
        "rule": ("Un niveau est atteint quand tous ses critères sont dépassés (valeur "
                 "strictement supérieure au seuil) ; le niveau affiché est le plus élevé atteint. "
                 "Quand une donnée manque, le niveau réel se situe entre ce niveau et le plus "
                 "élevé que les données connues n'excluent pas. Niveau inconnu : aucun critère "
                 "évaluable."),
        "inputs": [{"name": i.name, "label": i.label, "units": i.units,
                    "scope": "région du territoire" if i.scope == "region" else "territoire",
                    "estimate": ESTIMATES_FR.get(i.name) if i.name in ESTIMATES else None}
                   for i in thresholds.inputs.values()],
        "levels": [{"level": k, "label": LEVEL_LABELS[k],
                    "criteria": [{"input": c.input, "label": thresholds.inputs[c.input].label,
                                  "comparison": ">", "threshold": c.threshold,
                                  "units": thresholds.inputs[c.input].units}
                                 for c in thresholds.of_level(k)]}
                   for k in LEVELS],
    }


def _criterion(value: np.ndarray, threshold: float) -> np.ndarray:
    """1.0 over the threshold, 0.0 at or below, NaN where the value is missing."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(value), np.nan, (value > threshold).astype(float))


def _take(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of ``array`` (-1: a row of NaN)."""
    out = array[np.maximum(rows, 0)].astype(float)
    out[rows < 0] = np.nan
    return out


def region_rows(daily: xr.Dataset, codes: list[str]) -> np.ndarray:
    """Row of each territory's région (itself for a région or France), -1 if none in ``daily``.

    Walks ``territory_parent`` (commune → département → région; EPCI → département → région,
    :func:`features.territories.ancestor_at`); collectivités hang under France and have none.
    """
    index = {c: i for i, c in enumerate(codes)}
    levels = [str(v) for v in daily["territory_level"].values]
    parent_of = dict(zip(codes, (str(v) for v in daily["territory_parent"].values), strict=True))
    level_of = dict(zip(codes, levels, strict=True))
    out = np.full(len(codes), -1)
    for i, code in enumerate(codes):
        region = code if levels[i] == "country" else ancestor_at(code, "region", parent_of,
                                                                 level_of)
        out[i] = index.get(region, -1)
    return out


def _icu_occupancy(daily: xr.Dataset, yearly: xr.Dataset | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``100 × icu / icu_beds_adult`` (%), with the capacity of the latest 1 January on or
    before each day (carried forward over missing years)."""
    shape = (daily.sizes["territory"], daily.sizes["date"])
    icu = daily["icu"].values.astype(float) if "icu" in daily else np.full(shape, np.nan)
    beds = np.full(shape, np.nan)
    if yearly is not None and "icu_beds_adult" in yearly and yearly.sizes.get("date", 0):
        capacity = (yearly["icu_beds_adult"].transpose("territory", "date").to_pandas()
                    .reindex(daily["territory"].values).ffill(axis=1).to_numpy(dtype=float))
        years = pd.DatetimeIndex(yearly["date"].values)
        pick = years.searchsorted(pd.DatetimeIndex(daily["date"].values), side="right") - 1
        beds[:, pick >= 0] = capacity[:, pick[pick >= 0]]
    with np.errstate(invalid="ignore", divide="ignore"):
        occupancy = np.where(beds > 0, 100.0 * icu / beds, np.nan)
    return occupancy, icu, beds


def _missing_names(values: dict[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Comma-separated names of the inputs that are NaN, per cell (few distinct strings)."""
    names = list(values)
    code = np.zeros(shape, dtype=np.int64)
    for bit, name in enumerate(names):
        code |= np.isnan(values[name]).astype(np.int64) << bit
    uniques, inverse = np.unique(code, return_inverse=True)
    texts = np.array([",".join(n for b, n in enumerate(names) if u >> b & 1) for u in uniques],
                     dtype=object)
    return texts[inverse.reshape(shape)]
