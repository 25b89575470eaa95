"""What-if scenarios: interventions projected to admissions, beds and ICU beds vs capacity.

Public API (used by the CLI and the web service)::

    from scenarios import run_scenario, list_library, load_definition
    result = run_scenario("scenarios/lockdown_2020_11.yaml", as_of="2020-10-25")
    result = run_scenario(definition_dict, cube)          # cube: daily xr.Dataset

See ``scenarios/README.md`` for the method, the YAML schema and the validation on history.
"""

from scenarios.engine import QUANTILES, Projection, project, run_scenario, summarise
from scenarios.history import EffectModel, fit_effects
from scenarios.measures import COVARIATES, load_measures
from scenarios.params import EpiParameters
from scenarios.rnow import RNow, estimate_r_now
from scenarios.rt import rt_table
from scenarios.scenario import Scenario, resolve
from scenarios.schema import (
    SCHEMA,
    ScenarioValidationError,
    list_library,
    load_definition,
    load_library_scenario,
    validate_definition,
)

run = run_scenario  # the name used in the STYLE.md flow picture

__all__ = [
    "COVARIATES",
    "QUANTILES",
    "SCHEMA",
    "EffectModel",
    "EpiParameters",
    "Projection",
    "RNow",
    "Scenario",
    "ScenarioValidationError",
    "estimate_r_now",
    "fit_effects",
    "list_library",
    "load_definition",
    "load_library_scenario",
    "load_measures",
    "project",
    "resolve",
    "rt_table",
    "run",
    "run_scenario",
    "summarise",
    "validate_definition",
]
