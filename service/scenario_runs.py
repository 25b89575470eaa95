"""Scenario runs' results and publication decisions, as files: the store the use cases
(:mod:`service.usecases.scenarios`) and the API read.

A result is written to ``$VIGIE_HOME/scenario_runs/<job run id>.json`` under a temporary name
and renamed into place, under the job's publication fence (:mod:`features.fencing`): a run the
worker lost meanwhile writes nothing. An admin's decision on a run is
``publication-<id>.json`` in the same folder. No Flask, no job queue: the job (run in a worker
process) and the API both use it.
"""

from __future__ import annotations

import json
from pathlib import Path

from features.settings import Settings
from features.storage import jsonsafe
from features.storage.atomic import atomic_write_json, atomic_write_text


def results_dir(settings: Settings) -> Path:
    return settings.scenario_runs_dir


def store_result(settings: Settings, run_id: int, result: dict) -> Path:
    """Write a run's full result (NaN and infinities as null) atomically, only while the job
    that computed it still owns its run; the file."""
    return atomic_write_text(results_dir(settings) / f"{run_id}.json", jsonsafe.dumps(result),
                             publish=True)


def vintage_id_of(result: dict) -> str | None:
    """The cube vintage id a scenario result was computed on."""
    vintage = result.get("vintage")
    if isinstance(vintage, dict):
        vintage = vintage.get("vintage_id")
    return str(vintage) if vintage else None


def load_result(settings: Settings, run_id: int) -> dict | None:
    """A stored result, or None."""
    path = results_dir(settings) / f"{run_id}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _marker(settings: Settings, run_id: int) -> Path:
    return results_dir(settings) / f"publication-{int(run_id)}.json"


def read_publication(settings: Settings, run_id: int) -> dict | None:
    """An admin's decision on a run (``published`` true or false, by, role, at), or None."""
    try:
        return json.loads(_marker(settings, run_id).read_text())
    except (OSError, ValueError):
        return None


def write_publication(settings: Settings, run_id: int, decision: dict) -> None:
    """Written then renamed in the results folder: its modification time, part of the API
    response cache's freshness, changes with it, so every process drops its cached alerts."""
    atomic_write_json(_marker(settings, run_id), decision)


def remove_publication(settings: Settings, run_id: int) -> None:
    """Forget an admin's decision on a run (no marker: the default rule applies)."""
    _marker(settings, run_id).unlink(missing_ok=True)
