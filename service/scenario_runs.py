"""Scenario runs' results: computed by the ``scenario`` job, stored as JSON, read by the API.

A result is written to ``$VIGIE_HOME/scenario_runs/<job run id>.json`` under a temporary name
and renamed into place, under the job's publication fence (:mod:`features.fencing`): a run the
worker lost meanwhile writes nothing. Kept out of the API blueprint so that the job (run in a
worker process) does not import Flask views.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from features import fencing
from features.settings import Settings


def results_dir(settings: Settings) -> Path:
    return settings.home / "scenario_runs"


def run_and_store(settings: Settings, run_id: int, *, name: str | None = None,
                  definition: dict | None = None, as_of: str | None = None) -> dict:
    """Run a scenario (the ``scenario`` job's body) and store its full result."""
    from scenarios import load_library_scenario, run_scenario

    if definition is None:
        definition = load_library_scenario(name)
    result = run_scenario(definition, as_of=as_of, settings=settings)
    folder = results_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{run_id}.json.tmp"
    tmp.write_text(json.dumps(json_safe(result), default=str, allow_nan=False))
    try:
        with fencing.publishing():
            os.replace(tmp, folder / f"{run_id}.json")
    finally:
        tmp.unlink(missing_ok=True)
    inputs = result.get("inputs") or {}
    return {"scenario": inputs.get("name") or name, "vintage": vintage_id_of(result),
            "as_of": inputs.get("as_of"), "territories": sorted(result.get("summary") or {}),
            "timing_s": result.get("timing_s")}


def vintage_id_of(result: dict) -> str | None:
    """The cube vintage id a scenario result was computed on."""
    vintage = result.get("vintage")
    if isinstance(vintage, dict):
        vintage = vintage.get("vintage_id")
    return str(vintage) if vintage else None


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return json_safe(value.item())
        except (ValueError, AttributeError):
            return str(value)
    return value


def load_result(settings: Settings, run_id: int) -> dict | None:
    """A stored result, or None."""
    path = results_dir(settings) / f"{run_id}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
