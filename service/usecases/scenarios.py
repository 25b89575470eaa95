"""What-if scenarios: run one, submit one to the queue, decide whether a run is public.

Every entry point calls these: ``python -m service scenario run|compare`` (:func:`run_file`),
the ``scenario`` job (:func:`run_and_store`), ``POST /api/v1/scenarios/runs``
(:func:`submit_run`), the publication routes (:func:`decide_publication`, which writes its
audit row) and the public scenario alert (:func:`public_runs`). Nothing here imports Flask
views: settings and the database engine are parameters.

Results are stored by :mod:`service.scenario_runs` (``$VIGIE_HOME/scenario_runs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from features.settings import Settings
from features.storage import jsonsafe
from service.scenario_runs import (
    decided_ids,
    load_result,
    read_publication,
    remove_publication,
    results_dir,
    store_result,
    vintage_id_of,
    write_publication,
)

#: Triggers of runs the service started itself: the scheduler, a job chained by another, and
#: ``manual`` (``python -m service jobs run scenario`` or an admin's
#: ``POST /api/v1/jobs/scenario/run``). ``api`` is a run a planner submitted (``POST /runs``).
SERVICE_TRIGGERS = frozenset({"schedule", "chain", "manual"})
PUBLIC_RULE = ("public scenario figures (the scenario alert of /alerts) come only from runs of "
               "a library scenario file, unmodified (same content hash), run by the service "
               "(CLI or scheduled job), or from runs an admin published; an admin can also "
               "withdraw either kind")

__all__ = [
    "PUBLIC_RULE", "SERVICE_TRIGGERS", "InvalidSubmission", "NoSuchRun", "NotFinished",
    "decide_publication", "definition_sha256", "library", "load_result", "origin_of",
    "public_runs", "publication_of", "read_publication", "results_dir", "run_and_store",
    "run_file", "run_label", "scenario_run", "submit_run", "vintage_id_of",
    "write_publication",
]


class InvalidSubmission(ValueError):
    """A submitted scenario refused before it is queued (a 400): message and details."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NoSuchRun(LookupError):
    """No scenario run has that id (a 404)."""


class NotFinished(RuntimeError):
    """The run is not finished (queued, running, failed): nothing to publish (a 409)."""

    def __init__(self, run_id: int, status: str) -> None:
        super().__init__(f"scenario run {run_id} is {status}: only a finished run can be "
                         "published or withdrawn")
        self.status = status


# ---------------------------------------------------------------------------- running
def run_file(path: str, *, as_of: str | None = None, territories: list[str] | None = None,
             n_samples: int | None = None, include_trajectories: bool = True) -> dict[str, Any]:
    """Run a scenario file in this process (the command line); the result keeps its
    ``_projection`` (samples, for plots).

    Raises
    ------
    scenarios.ScenarioValidationError
        The file is not a valid scenario.
    KeyError, ValueError
        It cannot run on the current cube (unknown territory, no data…).
    """
    from scenarios import run_scenario

    return run_scenario(path, as_of=as_of, territories=territories, n_samples=n_samples,
                        include_trajectories=include_trajectories, return_projection=True)


def run_and_store(settings: Settings, run_id: int, *, name: str | None = None,
                  definition: dict | None = None, as_of: str | None = None) -> dict:
    """Run a scenario (library ``name`` or ``definition``) on the current cube and store its
    full result under the job run's id (the ``scenario`` job); the run's summary."""
    from scenarios import load_library_scenario, run_scenario

    if definition is None:
        definition = load_library_scenario(name)
    result = run_scenario(definition, as_of=as_of, settings=settings)
    store_result(settings, run_id, result)
    inputs = result.get("inputs") or {}
    return {"scenario": inputs.get("name") or name, "vintage": vintage_id_of(result),
            "as_of": inputs.get("as_of"), "territories": sorted(result.get("summary") or {}),
            "timing_s": result.get("timing_s")}


def library(paths: bool = False) -> list[dict]:
    """The scenario library: name and description of each file (and its ``path``)."""
    from scenarios import list_library

    return [{"name": s["name"], "description": s.get("description", ""),
             **({"path": s["path"]} if paths else {})} for s in list_library()]


def submit_run(engine: Any, *, name: str | None = None, definition: dict | None = None,
               as_of: str | None = None, requested_by: str | None = None) -> int:
    """Validate a scenario (library ``name`` or ``definition``) at once and queue a
    ``scenario`` job run of it (trigger ``api``); its run id.

    Raises
    ------
    InvalidSubmission
        Neither or both of ``name`` and ``definition``, no library scenario of that name
        (details: ``library``), or an invalid definition (details: ``errors``, every problem).
    """
    from scenarios import ScenarioValidationError, load_library_scenario, validate_definition
    from service.jobs.queue import enqueue

    if bool(name) == bool(definition):
        raise InvalidSubmission("give either 'name' (a library scenario) or 'definition'")
    try:
        if name:
            load_library_scenario(name)
        else:
            definition = validate_definition(definition, "request body")
    except KeyError as exc:
        raise InvalidSubmission(f"no library scenario named {name!r}",
                                library=[s["name"] for s in library()]) from exc
    except ScenarioValidationError as exc:
        raise InvalidSubmission("the scenario definition is not valid",
                                errors=list(getattr(exc, "errors", [str(exc)]))) from exc
    params = {"name": name, "definition": definition, "as_of": as_of}
    return enqueue(engine, "scenario", params, trigger="api", requested_by=requested_by)


def scenario_run(engine: Any, run_id: int) -> dict | None:
    """The job run ``run_id`` if it is a scenario run, else None."""
    from service.jobs.queue import get_run

    run = get_run(engine, run_id)
    return run if run is not None and run["job"] == "scenario" else None


def run_label(run: dict) -> tuple[str | None, str | None]:
    """(scenario name, start date) of a run, from its result or else its parameters."""
    params, result = run.get("params") or {}, run.get("result") or {}
    name = (result.get("scenario") or params.get("name")
            or (params.get("definition") or {}).get("name"))
    return name, result.get("as_of") or params.get("as_of")


# ---------------------------------------------------------------------------- publication
def definition_sha256(resolved: dict) -> str:
    """Content hash of a resolved definition (the ``inputs`` block of a result), without the
    name of the file or request it was read from."""
    import hashlib

    body = {k: v for k, v in resolved.items() if k != "source"}
    text = json.dumps(jsonsafe.plain(body), sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


_ORIGINS: dict[tuple, tuple[str, str | None]] = {}


def _library_key() -> tuple:
    from scenarios.schema import LIBRARY_DIR

    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                 for p in sorted(LIBRARY_DIR.glob("*.yaml")))


def _library_digest(inputs: dict) -> str | None:
    """Content hash of the library file named in ``inputs``, resolved at its start date on
    its territories (None: no such file, or it does not resolve so). The territories are the
    run's: a library scenario run on another territory (the page's library picks) is still
    the library's content, not a custom definition."""
    from scenarios import load_library_scenario, resolve

    try:
        library_definition = load_library_scenario(str(inputs["name"]))
        expected = resolve(library_definition, as_of=inputs["as_of"],
                           territories=inputs.get("territories") or None).to_dict()
    except Exception:
        return None
    return definition_sha256(expected)


def origin_of(settings: Settings, run_id: int) -> tuple[str, str | None]:
    """(``library`` or ``custom``, content hash of what was run) of a finished run.

    ``library`` when the definition the run recorded (its result's ``inputs``) has the same
    content hash as the library file of that name, as shipped now, resolved at the same start
    date: the name alone proves nothing. Results never change, so the answer is memoised.
    """
    key = (str(settings.home), int(run_id), _library_key())
    if key in _ORIGINS:
        return _ORIGINS[key]
    inputs = (load_result(settings, int(run_id)) or {}).get("inputs") or {}
    digest = definition_sha256(inputs) if inputs else None
    origin = "custom"
    if digest and inputs.get("name") and inputs.get("as_of") \
            and _library_digest(inputs) == digest:
        origin = "library"
    if len(_ORIGINS) > 4096:
        _ORIGINS.clear()
    _ORIGINS[key] = (origin, digest)
    return origin, digest


def _root_trigger(engine: Any, run: dict) -> str:
    """The trigger of the run a retry repeats (a retry keeps its origin)."""
    from service.jobs.queue import get_run

    seen = 0
    while run.get("trigger") == "retry" and run.get("retry_of") and seen < 20:
        parent = get_run(engine, run["retry_of"])
        if parent is None:
            break
        run, seen = parent, seen + 1
    return str(run.get("trigger") or "")


def publication_of(run: dict, settings: Settings, engine: Any) -> dict:
    """Where a run stands: ``origin`` (``library``: the content of a library file as shipped
    now; ``custom`` otherwise), ``service_run``, the admin's ``published`` decision (None when
    none) and ``public`` (the decision if any, else library content run by the service)."""
    origin, digest = (origin_of(settings, run["id"]) if run.get("status") == "ok"
                      else ("custom", None))
    service_run = _root_trigger(engine, run) in SERVICE_TRIGGERS
    decision = read_publication(settings, run["id"]) or {}
    published = decision.get("published")
    public = bool(published) if published is not None else (
        origin == "library" and service_run and run.get("status") == "ok")
    return {"origin": origin, "public": public and run.get("status") == "ok",
            "publication": {"published": published, "by": decision.get("by"),
                            "role": decision.get("role"), "at": decision.get("at"),
                            "service_run": service_run, "definition_sha256": digest}}


def _decided_ids(settings: Settings) -> list[int]:
    """Ids of the runs an admin decided on (a publication marker exists)."""
    return decided_ids(settings)


def public_runs(settings: Settings, engine: Any,
                scenario: str | None = None) -> Iterator[dict]:
    """Finished scenario runs the public may see, newest first (optionally of one scenario).

    Only the service's own runs and runs an admin decided on are read from the database, so
    that any number of planners' runs can never push a public run out of view.
    """
    import sqlalchemy as sa

    from service.db import job_runs

    where = [job_runs.c.job == "scenario", job_runs.c.status == "ok",
             sa.or_(job_runs.c.trigger.in_(sorted(SERVICE_TRIGGERS | {"retry"})),
                    job_runs.c.id.in_(_decided_ids(settings)))]
    offset, page = 0, 200
    while True:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(job_runs).where(*where)
                                .order_by(job_runs.c.id.desc()).limit(page).offset(offset)).all()
        for row in rows:
            run = dict(row._mapping)
            if scenario and (run.get("result") or {}).get("scenario") != scenario:
                continue
            if publication_of(run, settings, engine)["public"]:
                yield run
        if len(rows) < page:
            return
        offset += page


def decide_publication(settings: Settings, engine: Any, run_id: int, published: bool, *,
                       actor: str, role: str, method: str | None = None,
                       path: str | None = None, at: str | None = None) -> dict:
    """Record an admin's decision on a finished run: the marker the public reads, then its
    audit row (event ``scenario_published`` / ``scenario_unpublished``); without the audit
    row, no decision (the previous marker is put back). The run.

    Raises
    ------
    NoSuchRun
        No scenario run has that id.
    NotFinished
        The run is not ``ok``.
    """
    from features.catalog import utcnow
    from service.audit import record

    run = scenario_run(engine, run_id)
    if run is None:
        raise NoSuchRun(f"no scenario run {run_id}")
    if run["status"] != "ok":
        raise NotFinished(run_id, run["status"])
    previous = read_publication(settings, run_id)
    write_publication(settings, run_id, {"published": published, "by": actor, "role": role,
                                         "at": at or utcnow().isoformat()})
    name, as_of = run_label(run)
    state = publication_of(run, settings, engine)
    try:
        record(engine, event="scenario_published" if published else "scenario_unpublished",
               actor=actor, role=role, method=method, path=path, status=200,
               vintage_id=str((run.get("result") or {}).get("vintage") or "")[:64] or None,
               run_id=f"scenario:{run_id}",
               details={"scenario": name, "as_of": as_of, "origin": state["origin"],
                        "public": state["public"],
                        "definition_sha256": state["publication"]["definition_sha256"]})
    except Exception:  # no audit row, no publication
        if previous is None:
            remove_publication(settings, run_id)
        else:
            write_publication(settings, run_id, previous)
        raise
    return run
