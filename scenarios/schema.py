"""Scenario definitions: the YAML schema, its validation, reading files and the library.

A definition names a territory set, a start (``as_of``), a horizon and a list of
interventions. Dates are ISO dates or whole numbers of days relative to ``as_of``. Every error
names the file, the field (as a path such as ``interventions[1].effect.transmission``) and the
problem. The full field reference is in ``scenarios/README.md``. A valid definition is
resolved to absolute dates by :func:`scenarios.scenario.resolve`.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from features import safe_yaml
from features.safe_yaml import BoundedLoader
from features.territories import CODE_GROUPS, USER_CODE_PATTERN, territory_code_errors
from scenarios.levers import VARIANT_PRIORS
from scenarios.measures import COVARIATES
from scenarios.params import EpiParameters

LIBRARY_DIR = Path(__file__).resolve().parent
INTERVENTION_TYPES = (
    "lockdown",
    "lockdown_light",
    "curfew",
    "school_closure",
    "mask_mandate",
    "relaxation",
    "custom",
)
TERRITORY_PATTERN = rf"^({'|'.join((USER_CODE_PATTERN, *CODE_GROUPS))})$"
# Bounds on what a definition may ask the engine to do (a definition can come from any planner
# through the API: every size the engine's memory or time grows with has a maximum).
#: ISO dates of this century only (pandas' calendar ends in 2262; the data start in 2020).
ISO_DATE = r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}$"
MAX_TERRITORIES = 120       # every département and région listed one by one still fits
MAX_INTERVENTIONS = 20      # the whole 2020-2021 French timeline is about 15 measures
MAX_SPAN_DAYS = 730         # an intervention lasts at most two years (as duration_days)
#: Upper bound of territories × samples × days simulated (infection dates: 7 + max_delay +
#: horizon). About 50 bytes each in the engine's arrays: 10 million is about 0.5 GB on top of
#: the cube; the library's largest run is 6 × 500 × 89 = 0.27 million, every département at
#: the default 500 samples and 42 days 4.5 million.
MAX_CELLS = 10_000_000
#: Territories a group name stands for (upper bounds, for the cost estimate).
GROUP_SIZES = {"departments": 101, "metro_departments": 96, "regions": 18}
_TEXT = {"type": "string", "maxLength": 2000}
_DATE = {"type": ["integer", "string"], "minimum": -3650, "maximum": 3650,
         "pattern": ISO_DATE}
#: A definition's or an intervention's territories: 1 to MAX_TERRITORIES codes or group names.
_TERRITORY_LIST = {"type": "array", "minItems": 1, "maxItems": MAX_TERRITORIES,
                   "items": {"type": "string", "pattern": TERRITORY_PATTERN}}
_CAP_VALUE = {
    "if": {"type": "string"},
    "then": {"const": "cube"},
    "else": {"type": "number", "minimum": 0, "maximum": 1_000_000},
}
# A capacity is a number of beds, "cube" (DREES beds from the cube), or a mapping from territory
# code (or "default") to either.
_CAPACITY = {
    "if": {"type": "object"},
    "then": {
        "propertyNames": {"pattern": r"^(default|FR|R[0-9]{2,3}|[0-9]{2}|2A|2B|97[0-9])$"},
        "additionalProperties": _CAP_VALUE,
    },
    "else": _CAP_VALUE,
}
_PARAM_TYPES = {
    name: ({"type": "boolean"} if isinstance(default, bool) else
           {"type": "integer", "minimum": 1} if isinstance(default, int) else
           {"type": "number", "exclusiveMinimum": 0})
    for name, default in EpiParameters().__dict__.items()
    if name != "extra"
}
_PARAM_TYPES["p_icu_path"] = {"type": "number", "minimum": 0, "maximum": 1}
# Upper bounds: generous for any respiratory epidemic, tight enough that a typo (days typed as
# hours, a percentage for a fraction) is refused instead of silently projected.
_PARAM_MAX = {"gi_mean": 15, "gi_sd": 10, "incubation_median": 21, "incubation_q975": 42,
              "onset_to_admission_mean": 30, "onset_to_admission_sd": 30,
              "los_ward_median": 120, "los_ward_icu_path_median": 120, "los_icu_median": 120,
              "los_shape": 50, "los_sd_log": 1, "ihr": 1, "r_max": 20,
              # Truncations of the discretised distributions (defaults 20, 40, 120 days): a
              # generation interval of mean ≤ 15 d has no mass worth keeping past 30 d; the
              # infection-to-admission delay (incubation ≤ 42 d at 97.5 %, onset to admission
              # ≤ 30 d on average) past 60 d; DREES finds stays over 180 d exceptional.
              "max_gi": 30, "max_delay": 60, "max_los": 180}
for _name, _max in _PARAM_MAX.items():
    _PARAM_TYPES[_name] = {**_PARAM_TYPES[_name], "maximum": _max}

_VARIANT_SHARES = ["variant_share_e484k", "variant_share_e484q", "variant_share_l452r",
                   "variant_share_a0c0", "variant_share_d"]
_VACCINATION = {
    "type": "object",
    "required": ["coverage", "by"],
    "additionalProperties": False,
    "properties": {
        "coverage": {"type": "number", "minimum": 0, "maximum": 100},
        "by": {"type": ["integer", "string"], "minimum": 1, "maximum": 730,
               "pattern": ISO_DATE},
        "start_coverage": {"if": {"type": "string"}, "then": {"const": "cube"},
                           "else": {"type": "number", "minimum": 0, "maximum": 100}},
        "effect": {"type": "number", "minimum": 0, "maximum": 0.95},
        "effect_sd": {"type": "number", "minimum": 0, "maximum": 0.5},
        "protection_delay_days": {"type": "integer", "minimum": 0, "maximum": 42},
    },
}
_VARIANT = {
    "type": "object",
    "required": ["advantage", "share"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "advantage": {"if": {"type": "string"}, "then": {"enum": list(VARIANT_PRIORS)},
                      "else": {"type": "number", "exclusiveMinimum": 0, "maximum": 3}},
        "advantage_sd": {"type": "number", "minimum": 0, "maximum": 1},
        "share": {"if": {"type": "string"}, "then": {"const": "cube"},
                  "else": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}},
        "share_indicator": {"enum": _VARIANT_SHARES},
        "share_lag_days": {"type": "integer", "minimum": 0, "maximum": 21},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Vigie scenario definition",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": _TEXT,
        # French title and description the dashboard shows (the description above is English).
        "title_fr": {"type": "string", "minLength": 1, "maxLength": 120},
        "description_fr": {"type": "string", "minLength": 1, "maxLength": 2000},
        "territories": _TERRITORY_LIST,
        "as_of": {"type": "string", "pattern": ISO_DATE},
        "horizon_days": {"type": "integer", "minimum": 1, "maximum": 180},
        "n_samples": {"type": "integer", "minimum": 20, "maximum": 5000},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "prior_policy": {"enum": ["as_of", "latest"]},
        "rt_basis": {"enum": ["cases", "admissions"]},
        "rt_pool": {"type": "boolean"},
        "vaccination": _VACCINATION,
        "variant": _VARIANT,
        "capacity": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"icu": _CAPACITY, "hosp": _CAPACITY},
        },
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "properties": _PARAM_TYPES,
        },
        "interventions": {
            "type": "array",
            "maxItems": MAX_INTERVENTIONS,
            "items": {
                "type": "object",
                "required": ["type", "start"],
                "additionalProperties": False,
                "properties": {
                    "type": {"enum": list(INTERVENTION_TYPES)},
                    "label": {"type": "string", "maxLength": 200},
                    "start": _DATE,
                    "end": _DATE,
                    "duration_days": {"type": "integer", "minimum": 1, "maximum": 730},
                    "ramp_days": {"type": "integer", "minimum": 0, "maximum": 60},
                    "hour": {"type": "integer", "minimum": 16, "maximum": 23},
                    "territories": _TERRITORY_LIST,
                    "lifts": {"type": "array", "maxItems": len(COVARIATES), "uniqueItems": True,
                              "items": {"enum": list(COVARIATES)}},
                    "effect": {
                        "if": {"type": "string"},
                        "then": {"const": "history"},
                        "else": {
                            "type": "object",
                            "minProperties": 1,
                            "additionalProperties": False,
                            "properties": {
                                "transmission": {"type": "number", "exclusiveMinimum": -1,
                                                 "maximum": 5},
                                "transmission_sd": {"type": "number", "minimum": 0, "maximum": 2},
                                "mobility": {"type": "number", "minimum": -100, "maximum": 100},
                                "stringency": {"type": "number", "minimum": -100,
                                               "maximum": 100},
                            },
                        },
                    },
                },
            },
        },
    },
}


class ScenarioValidationError(ValueError):
    """A scenario definition is invalid; ``errors`` lists ``"<field path>: <problem>"``."""

    def __init__(self, errors: list[str], source: str = "<definition>") -> None:
        self.errors = errors
        self.source = source
        super().__init__("\n".join(f"{source}: {e}" for e in errors))


def _normalise(obj: Any) -> Any:
    """YAML turns ``2020-10-25`` into a date: back to ISO strings so one schema covers both."""
    if isinstance(obj, dict):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    if isinstance(obj, dt.datetime):
        return obj.date().isoformat()
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for p in error.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def validate_definition(definition: dict[str, Any], source: str = "<definition>") -> dict:
    """Check a definition against :data:`SCHEMA` and the rules the schema cannot express.

    Parameters
    ----------
    definition:
        Parsed YAML/JSON mapping.
    source:
        File name used in error messages.

    Returns
    -------
    dict
        The normalised definition (dates as ISO strings).

    Raises
    ------
    ScenarioValidationError
        Listing every problem as ``"<field path>: <problem>"``.
    """
    if not isinstance(definition, dict):
        raise ScenarioValidationError(
            [f"(top level): expected a mapping of fields, got {type(definition).__name__}"], source
        )
    d = _normalise(copy.deepcopy(definition))
    errors = _schema_errors(d)
    for i, iv in enumerate(d.get("interventions") or []):
        if isinstance(iv, dict):
            errors += _intervention_errors(f"interventions[{i}]", iv)
    errors += _lever_errors(d)
    errors += _date_errors("as_of", d.get("as_of"))
    errors += [f"{where}: not a finite number" for where in _non_finite(d)]
    if not errors:
        cells = run_size(d)
        if cells > MAX_CELLS:
            errors.append(
                f"(top level): too large a run: {cells:,} territory × sample × day cells "
                f"(territories × n_samples × (7 + parameters.max_delay + horizon_days)); at "
                f"most {MAX_CELLS:,}: fewer territories, samples or days")
    if errors:
        raise ScenarioValidationError(errors, source)
    return d


def _schema_errors(d: dict[str, Any]) -> list[str]:
    """What :data:`SCHEMA` refuses, in field order; an unknown field lists the allowed ones."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = []
    for e in sorted(validator.iter_errors(d), key=lambda e: list(map(str, e.absolute_path))):
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = sorted(e.schema.get("properties", {}))
            extra = sorted(set(e.instance) - set(allowed))
            for k in extra:
                where = _path(e)
                where = f"{where}.{k}" if where != "(top level)" else k
                errors.append(f"{where}: unknown field; allowed fields: {allowed}")
        else:
            errors.append(f"{_path(e)}: {e.message}")
    return errors


def _date_errors(where: str, value: Any) -> list[str]:
    """A text that is not a calendar date (the schema checks only its shape)."""
    if not isinstance(value, str):
        return []
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return [f"{where}: {value!r} is not a valid date (YYYY-MM-DD)"]
    return []


def _intervention_errors(where: str, iv: dict[str, Any]) -> list[str]:
    """Rules of one intervention the schema cannot express."""
    errors = _date_errors(f"{where}.start", iv.get("start")) + _date_errors(
        f"{where}.end", iv.get("end"))
    if "end" in iv and "duration_days" in iv:
        errors.append(f"{where}: give either end or duration_days, not both")
    if iv.get("type") == "custom" and not isinstance(iv.get("effect"), dict):
        errors.append(
            f"{where}.effect: a custom intervention needs an explicit effect "
            "(transmission, mobility or stringency); 'history' has nothing to learn from"
        )
    if iv.get("type") == "curfew" and iv.get("hour", 21) >= 22 and iv.get(
        "effect", "history"
    ) == "history":
        errors.append(
            f"{where}.hour: a curfew at {iv.get('hour')}:00 has no history estimate "
            "(only 18-21 h curfews were in force); give an explicit effect"
        )
    if "lifts" in iv and iv.get("type") != "relaxation":
        errors.append(f"{where}.lifts: only a relaxation lifts measures")
    return errors + _span_errors(where, iv.get("start"), iv.get("end"))


def _span_errors(where: str, s: Any, e: Any) -> list[str]:
    """An intervention ending before it starts or lasting over :data:`MAX_SPAN_DAYS`."""
    if type(s) is type(e) and isinstance(s, int | str) and e < s:
        return [f"{where}.end: {e} is before start {s}"]
    if type(s) is type(e) and isinstance(s, int) and e - s >= MAX_SPAN_DAYS:
        return [f"{where}.end: lasts {e - s + 1} days; at most {MAX_SPAN_DAYS}"]
    if isinstance(s, str) and isinstance(e, str):
        try:
            span = (dt.date.fromisoformat(e) - dt.date.fromisoformat(s)).days
        except ValueError:
            span = 0  # reported above
        if span >= MAX_SPAN_DAYS:
            return [f"{where}.end: lasts {span + 1} days; at most {MAX_SPAN_DAYS}"]
    return []


def _lever_errors(d: dict[str, Any]) -> list[str]:
    """A variant share read from the cube without a marker; a vaccination date that is not
    a date."""
    errors = []
    var = d.get("variant")
    if isinstance(var, dict) and var.get("share") == "cube" and "share_indicator" not in var \
            and not (isinstance(var.get("advantage"), str)
                     and VARIANT_PRIORS.get(var["advantage"], (0, 0, "", None))[3]):
        errors.append("variant.share: 'cube' needs share_indicator (the cube has no share "
                      f"marker for {var.get('advantage')!r}); or give the share in %")
    vac = d.get("vaccination")
    if isinstance(vac, dict):
        errors += _date_errors("vaccination.by", vac.get("by"))
    return errors


def territory_override_errors(definition: dict[str, Any], territories: list[str]) -> list[str]:
    """Territories given outside a valid definition (``--territory``, ``territories=``):
    codes that are not territory codes, more than :data:`MAX_TERRITORIES`, or a run over
    :data:`MAX_CELLS` with them."""
    bad = territory_code_errors(territories)
    if not bad and len(territories) > MAX_TERRITORIES:
        bad = [f"territories: {len(territories)} given; at most {MAX_TERRITORIES}"]
    if not bad and run_size(definition, territories) > MAX_CELLS:
        bad = [f"territories: too large a run ({run_size(definition, territories):,} "
               f"territory × sample × day cells; at most {MAX_CELLS:,})"]
    return bad


def _non_finite(obj: Any, where: str = "") -> list[str]:
    """Paths of NaN and infinite numbers (JSON bodies may carry them; every bound lets NaN
    through, since no comparison with it is true)."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "(top level)"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _non_finite(v, f"{where}.{k}" if where
                                                               else str(k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _non_finite(v, f"{where}[{i}]")]
    return []


def run_size(definition: dict[str, Any], territories: list[str] | None = None) -> int:
    """Upper bound of the territory × sample × day cells a (valid) definition simulates; the
    engine's memory grows with it (:data:`MAX_CELLS`)."""
    codes = territories or definition.get("territories") or ["FR"]
    n_terr = sum(GROUP_SIZES.get(c, 0) for c in set(codes)) + len(
        {c for c in codes if c not in GROUP_SIZES})
    params = definition.get("parameters") or {}
    days = 7 + int(params.get("max_delay", EpiParameters.max_delay)) + int(
        definition.get("horizon_days", 42))
    return n_terr * int(definition.get("n_samples", 500)) * days


class _Loader(BoundedLoader):
    """Safe loader that keeps dates as text, so that an impossible date (2020-02-30) is
    reported by the validator with its field instead of crashing the YAML parser. Refuses
    anchors, aliases and deep nesting (:mod:`features.safe_yaml`)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_definition(path: str | Path) -> dict[str, Any]:
    """Read and validate a YAML scenario file (raises :class:`ScenarioValidationError`)."""
    path = Path(path)
    try:
        raw = safe_yaml.load(safe_yaml.read_text(path), _Loader)
    except yaml.YAMLError as exc:
        raise ScenarioValidationError([f"(file): not valid YAML: {exc}"], str(path)) from exc
    except safe_yaml.YamlFileError as exc:
        raise ScenarioValidationError([f"(file): {exc}"], str(path)) from exc
    d = validate_definition(raw, str(path))
    d["_source"] = str(path)
    return d


def list_library(directory: str | Path | None = None) -> list[dict[str, str]]:
    """The shipped scenario files: ``[{"name", "path", "description"}]`` sorted by name."""
    directory = Path(directory) if directory else LIBRARY_DIR
    out = []
    for p in sorted(directory.glob("*.yaml")):
        d = load_definition(p)
        out.append({"name": d["name"], "path": str(p), "description": d.get("description", "")})
    return out


def load_library_scenario(name: str) -> dict[str, Any]:
    """Load a library scenario by its name or file stem (e.g. ``"lockdown_2020_11"``)."""
    for p in sorted(LIBRARY_DIR.glob("*.yaml")):
        d = load_definition(p)
        if name in (p.stem, d["name"]):
            return d
    raise KeyError(f"no library scenario named {name!r}; see scenarios.list_library()")
