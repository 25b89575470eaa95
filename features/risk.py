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
(:attr:`features.settings.Settings.risk_thresholds`), validated on load
(:class:`RiskThresholdsError` names the file, line, field, what was expected and found).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from features.errors import Problem
from features.territories import ancestor_at

if TYPE_CHECKING:
    from features.settings import Settings

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "risk_thresholds.yaml"
LEVEL_UNKNOWN = -1
LEVELS = (0, 1, 2, 3)
#: French labels shown on the dashboard.
LEVEL_LABELS: dict[int, str] = {
    LEVEL_UNKNOWN: "Niveau inconnu",
    0: "Vigilance",
    1: "Alerte",
    2: "Alerte renforcée",
    3: "Alerte maximale",
}
ICU_OCCUPANCY = "icu_occupancy"
#: Inputs a thresholds file may use: daily cube variables, and the computed ICU occupancy.
KNOWN_INPUTS = ("incidence_rate_7d", "incidence_rate_7d_65_plus", "positivity_rate_7d",
                ICU_OCCUPANCY, "rt", "growth_rate")
SCOPES = ("territory", "region")
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
#: ``<input>_origin`` code → the word the API serves.
ORIGIN_NAMES: dict[int, str | None] = {ORIGIN_NONE: None, ORIGIN_OBSERVED: "observed",
                                       ORIGIN_ESTIMATED: "estimated_from_screening"}


class RiskThresholdsError(ValueError):
    """A thresholds file that cannot be used; lists every problem found."""

    def __init__(self, path: Path | str, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        super().__init__("risk thresholds rejected:\n  " + "\n  ".join(map(str, problems)))


@dataclass(frozen=True)
class RiskInput:
    """One input of the criteria: ``name`` (cube variable or ``icu_occupancy``), French
    ``label`` and ``units``, and ``scope`` (``territory`` or ``region``)."""

    name: str
    label: str
    units: str
    scope: str


@dataclass(frozen=True)
class Criterion:
    """``input > threshold`` is required for ``level``."""

    level: int
    input: str
    threshold: float

    @property
    def variable(self) -> str:
        """Name of the criterion's variable in :func:`assess`'s output."""
        return f"criterion_{self.level}_{self.input}"


@dataclass(frozen=True)
class RiskThresholds:
    """Validated thresholds: their inputs, criteria by level, and where they come from."""

    name: str
    path: str
    citation: str
    urls: tuple[str, ...]
    notes: str
    inputs: dict[str, RiskInput]
    criteria: tuple[Criterion, ...]

    def of_level(self, level: int) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.level == level)


def load_thresholds(settings: Settings | None = None) -> RiskThresholds:
    """The thresholds in force: ``VIGIE_RISK_THRESHOLDS`` if set, else the shipped defaults.

    Raises
    ------
    RiskThresholdsError
        The file is missing, not YAML, or not of the expected shape.
    """
    from features.settings import Settings

    settings = settings or Settings.from_env()
    return read_thresholds(settings.risk_thresholds or DEFAULT_THRESHOLDS)


#: The last validated file, by path and content: the service loads the thresholds on every
#: request, and parsing the YAML costs about as much as assessing every territory.
_CACHE: dict[tuple[str, bytes], RiskThresholds] = {}


def read_thresholds(path: Path | str) -> RiskThresholds:
    """Read and validate one thresholds file (see ``features/risk_thresholds.yaml``); the same
    content is not parsed twice in a row."""
    path = Path(path)
    try:
        key = (str(path), hashlib.sha256(path.read_bytes()).digest())
    except OSError:
        key = None
    if key in _CACHE:
        return _CACHE[key]
    thresholds = _read(path)
    _CACHE.clear()
    if key is not None:
        _CACHE[key] = thresholds
    return thresholds


def _read(path: Path) -> RiskThresholds:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RiskThresholdsError(name, [Problem(name, "a readable UTF-8 YAML file",
                                                 f"{type(exc).__name__}: {exc}")]) from exc
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RiskThresholdsError(name, [Problem(
            name, "valid YAML", str(getattr(exc, "problem", exc)),
            line=mark.line + 1 if mark else None)]) from exc
    return _validate(data, name, lines)


def _key_lines(node: Any, path: tuple = ()) -> dict[tuple, int]:
    """1-based line of every mapping key / sequence item, by its path of keys."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines[sub] = key.start_mark.line + 1
            lines.update(_key_lines(value, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, str(i))] = item.start_mark.line + 1
            lines.update(_key_lines(item, (*path, str(i))))
    return lines


def _validate(data: Any, name: str, lines: dict[tuple, int]) -> RiskThresholds:
    problems: list[Problem] = []

    def problem(path: tuple, expected: str, found: Any) -> None:
        path = tuple(map(str, path))
        line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines),
                    None)
        problems.append(Problem(name, expected, repr(found), line=line,
                                column=".".join(map(str, path)) or None))

    if not isinstance(data, dict):
        raise RiskThresholdsError(name, [Problem(name, "a mapping with name, source, inputs "
                                                 "and levels", repr(data))])
    for key in sorted(set(data) - {"name", "source", "inputs", "levels"}, key=str):
        problem((key,), "one of name, source, inputs, levels", key)
    source = data.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("citation"), str) \
            or not source["citation"].strip():
        problem(("source",), "a mapping with a non-empty 'citation' (the thresholds' source)",
                source)
        source = {}
    urls = source.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        problem(("source", "urls"), "a list of URLs", urls)
        urls = []

    inputs: dict[str, RiskInput] = {}
    raw_inputs = data.get("inputs")
    if not isinstance(raw_inputs, dict) or not raw_inputs:
        problem(("inputs",), "a mapping of input name to label, units, scope", raw_inputs)
        raw_inputs = {}
    for key, spec in raw_inputs.items():
        if key not in KNOWN_INPUTS:
            problem(("inputs", key), f"an input among {', '.join(KNOWN_INPUTS)}", key)
            continue
        if not isinstance(spec, dict):
            problem(("inputs", key), "a mapping with label, units, scope", spec)
            continue
        for field in ("label", "units"):
            if not isinstance(spec.get(field), str) or not spec[field].strip():
                problem(("inputs", key, field), "a non-empty text", spec.get(field))
        if spec.get("scope", "territory") not in SCOPES:
            problem(("inputs", key, "scope"), f"one of {', '.join(SCOPES)}", spec.get("scope"))
        inputs[key] = RiskInput(key, str(spec.get("label", "")), str(spec.get("units", "")),
                                str(spec.get("scope", "territory")))

    criteria: list[Criterion] = []
    levels = data.get("levels")
    if not isinstance(levels, dict) or not levels:
        problem(("levels",), "a mapping of level (1, 2, 3) to {input: threshold}", levels)
        levels = {}
    for level, rules in levels.items():
        if level not in LEVELS[1:] or isinstance(level, bool):
            problem(("levels", level), "a level among 1, 2, 3", level)
            continue
        if not isinstance(rules, dict) or not rules:
            problem(("levels", level), "a non-empty mapping {input: threshold}", rules)
            continue
        for key, threshold in rules.items():
            if key not in inputs:
                problem(("levels", level, key), "an input declared under 'inputs'", key)
            elif isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                    or not np.isfinite(threshold):
                problem(("levels", level, key), "a number (the value must be over it)",
                        threshold)
            else:
                criteria.append(Criterion(int(level), key, float(threshold)))
    if problems:
        raise RiskThresholdsError(name, problems)
    return RiskThresholds(
        name=str(data.get("name") or Path(name).stem), path=name,
        citation=" ".join(source["citation"].split()), urls=tuple(urls),
        notes=" ".join(str(source.get("notes", "")).split()),
        inputs=inputs, criteria=tuple(sorted(criteria, key=lambda c: (c.level, c.input))))


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
    codes = [str(c) for c in daily["territory"].values]
    shape = (len(codes), daily.sizes["date"])
    region_of = region_rows(daily, codes)
    own = np.arange(len(codes))
    values, origin, extra, estimated = {}, {}, {}, {}
    for name, spec in thresholds.inputs.items():
        rows = region_of if spec.scope == "region" else own
        if name == ICU_OCCUPANCY:
            occupancy, icu, beds = _icu_occupancy(daily, yearly)
            extra["icu"], extra["icu_beds_adult"] = _take(icu, rows), _take(beds, rows)
            values[name] = _take(occupancy, rows)
        elif name in daily:
            values[name] = _take(daily[name].values.astype(float), rows)
        else:
            values[name] = np.full(shape, np.nan)
        if ESTIMATES.get(name) in daily:
            guess = _take(daily[ESTIMATES[name]].values.astype(float), rows)
            estimated[name] = np.isnan(values[name]) & ~np.isnan(guess)
            values[name] = np.where(estimated[name], guess, values[name])
        origin[name] = np.array([codes[r] if r >= 0 else "" for r in rows], dtype=object)

    met = {c: _criterion(values[c.input], c.threshold) for c in thresholds.criteria}
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

    dims = ("territory", "date")
    out = xr.Dataset(coords={k: v for k, v in daily.coords.items()})
    out["risk_level"] = (dims, level, {
        "units": "level", "description": "niveau de risque : -1 inconnu, 0 Vigilance, 1 Alerte, "
        "2 Alerte renforcée, 3 Alerte maximale (plus haut niveau atteint)"})
    out["risk_level_max"] = (dims, level_max, {
        "units": "level", "description": "plus haut niveau que les données manquantes "
        "n'excluent pas"})
    out["risk_complete"] = (dims, (level == level_max) & (evaluated > 0),
                            {"description": "toutes les données nécessaires étaient connues"})
    out["criteria_evaluated"] = (dims, evaluated, {
        "units": "criteria", "description": f"critères évaluables sur "
        f"{len(thresholds.criteria)}"})
    for c, state in met.items():
        spec = thresholds.inputs[c.input]
        out[c.variable] = (dims, state, {
            "level": c.level, "input": c.input, "threshold": c.threshold, "comparison": ">",
            "units": spec.units, "description": f"{spec.label} > {c.threshold:g} "
            f"({LEVEL_LABELS[c.level]}) : 1 oui, 0 non, vide si donnée manquante"})
    for name, array in {**values, **extra}.items():
        spec = thresholds.inputs.get(name)
        attrs = ({"units": spec.units, "description": spec.label, "scope": spec.scope} if spec
                 else {"units": "beds" if name != "icu" else "patients",
                       "description": f"{name} behind icu_occupancy"})
        if name in estimated:
            attrs["estimate"] = ESTIMATES[name]
        out[name] = (dims, array, attrs)
    for name, codes_used in origin.items():
        out[f"{name}_from"] = ("territory", codes_used,
                               {"description": f"territory whose {name} is used"})
    for name, array in values.items():
        code = np.where(np.isnan(array), np.int8(ORIGIN_NONE), np.int8(ORIGIN_OBSERVED))
        if name in estimated:
            code[estimated[name]] = ORIGIN_ESTIMATED
        out[f"{name}_origin"] = (dims, code.astype(np.int8), {
            "units": "code", "description": f"origin of {name}: 0 none, 1 the territory's own "
            "value (published or derived from its counts)"
            + (f", 2 estimated ({ESTIMATES[name]})" if name in ESTIMATES else "")})
    out["inputs_missing"] = (dims, _missing_names(values, shape),
                             {"description": "données d'entrée manquantes ce jour"})
    out.attrs = {"thresholds": thresholds.name, "thresholds_path": thresholds.path,
                 "source": thresholds.citation,
                 "level_labels": "; ".join(f"{k} {v}" for k, v in LEVEL_LABELS.items())}
    return out


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
