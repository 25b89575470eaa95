"""Scenario runs' results and publication decisions, as files: the store the use cases
(:mod:`service.usecases.scenarios`) and the API read.

A result is written to ``$VIGIE_HOME/scenario_runs/<job run id>.json`` under a temporary name
and renamed into place, under the job's publication fence (:mod:`features.fencing`): a run the
worker lost meanwhile writes nothing. An admin's decision on a run is
``publication-<id>.json`` in the same folder. No Flask, no job queue: the job (run in a worker
process) and the API both use it. With ``VIGIE_STORE_URL`` set, the folder is the prefix
``scenario_runs/`` of that store (:mod:`features.storage.objects`): each file one object, written
by one ``PUT`` (a reader sees the previous object or the whole new one).
"""

from __future__ import annotations

import json
from pathlib import Path

from features.settings import Settings
from features.storage import jsonsafe, objects

FOLDER = "scenario_runs"


def results_dir(settings: Settings) -> Path:
    """The local folder of the results (the home's; with an object store, nothing is there)."""
    return settings.scenario_runs_dir


def _store(settings: Settings) -> objects.ObjectStore:
    if getattr(settings, "store_url", ""):
        return objects.for_settings(settings).child(FOLDER)
    return objects.LocalStore(results_dir(settings))


def _load(settings: Settings, name: str) -> dict | None:
    try:
        return json.loads(_store(settings).read_bytes(name))
    except FileNotFoundError:
        return None


def store_result(settings: Settings, run_id: int, result: dict) -> str:
    """Write a run's full result (NaN and infinities as null) atomically, only while the job
    that computed it still owns its run; where it is (a path or a URL)."""
    store, name = _store(settings), f"{int(run_id)}.json"
    store.write_bytes(name, jsonsafe.dumps(result).encode("utf-8"), publish=True)
    return store.url(name)


def vintage_id_of(result: dict) -> str | None:
    """The cube vintage id a scenario result was computed on."""
    vintage = result.get("vintage")
    if isinstance(vintage, dict):
        vintage = vintage.get("vintage_id")
    return str(vintage) if vintage else None


def load_result(settings: Settings, run_id: int) -> dict | None:
    """A stored result, or None."""
    return _load(settings, f"{int(run_id)}.json")


def result_ids(settings: Settings) -> list[int]:
    """Ids of the runs whose result is stored."""
    return sorted(int(n[:-5]) for n in _store(settings).names()
                  if n.endswith(".json") and n[:-5].isdigit())


def decided_ids(settings: Settings) -> list[int]:
    """Ids of the runs an admin decided on (a publication marker exists)."""
    prefix, out = "publication-", []
    for name in _store(settings).names():
        stem = name[len(prefix):-5] if name.startswith(prefix) and name.endswith(".json") else ""
        if stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def _marker(run_id: int) -> str:
    return f"publication-{int(run_id)}.json"


def read_publication(settings: Settings, run_id: int) -> dict | None:
    """An admin's decision on a run (``published`` true or false, by, role, at), or None."""
    try:
        return _load(settings, _marker(run_id))
    except (OSError, ValueError):
        return None


def write_publication(settings: Settings, run_id: int, decision: dict) -> None:
    """Written then renamed in the results folder (one object on a store): its modification
    time, part of the API response cache's freshness, changes with it, so every process drops
    its cached alerts."""
    _store(settings).write_bytes(_marker(run_id), json.dumps(decision).encode("utf-8"))


def remove_publication(settings: Settings, run_id: int) -> None:
    """Forget an admin's decision on a run (no marker: the default rule applies)."""
    _store(settings).delete(_marker(run_id))


def freshness(settings: Settings) -> int:
    """Changes whenever a result or a decision is written or removed (the API's cache)."""
    return _store(settings).stamp()
