"""``/api/v1/scenarios``: the scenario library, runs submitted through the API, comparisons.

``POST /runs`` (planner or above) validates the definition (or library name) at once — a bad
definition is a 400 listing every problem — then queues a ``scenario`` job: the run happens in
the scheduler's worker, never in the request thread. The answer (202) gives the run id to poll.
Results are stored as JSON under ``$VIGIE_HOME/scenario_runs/<id>.json`` (written then renamed).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf, Range, Regexp
from flask import url_for

from features.settings import Settings
from service.api.cache import cached
from service.api.formats import csv_response, json_response, render
from service.api.lookups import parse_codes
from service.api.paging import PageInfo, PageQuery, page_info, page_window, paginate
from service.api.state import state
from service.audit import note
from service.auth import current_principal, requires
from service.errors import ApiError, bad_request, not_found
from service.scenario_runs import load_result as _load_result
from service.scenario_runs import results_dir, run_and_store, vintage_id_of  # noqa: F401

PREFIX = "scenarios"
bp = APIBlueprint("scenarios", __name__, tag="scenarios")


def load_result(run_id: int) -> dict | None:
    """A stored scenario result of this app's home, or None."""
    return _load_result(state().settings, run_id)


# ---------------------------------------------------------------------------- publication
#: Triggers of runs the service started itself: the scheduler, a job chained by another, and
#: ``manual`` (``python -m service jobs run scenario`` or an admin's
#: ``POST /api/v1/jobs/scenario/run``). ``api`` is a run a planner submitted (``POST /runs``).
SERVICE_TRIGGERS = frozenset({"schedule", "chain", "manual"})
PUBLIC_RULE = ("public scenario figures (the scenario alert of /alerts) come only from runs of "
               "a library scenario file, unmodified (same content hash), run by the service "
               "(CLI or scheduled job), or from runs an admin published; an admin can also "
               "withdraw either kind")


def definition_sha256(resolved: dict) -> str:
    """Content hash of a resolved definition (the ``inputs`` block of a result), without the
    name of the file or request it was read from."""
    import hashlib

    body = {k: v for k, v in resolved.items() if k != "source"}
    text = json.dumps(json.loads(json.dumps(body, default=str)), sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


_ORIGINS: dict[tuple, tuple[str, str | None]] = {}


def _library_key() -> tuple:
    from scenarios.schema import LIBRARY_DIR

    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                 for p in sorted(LIBRARY_DIR.glob("*.yaml")))


def origin_of(settings: Settings, run_id: int) -> tuple[str, str | None]:
    """(``library`` or ``custom``, content hash of what was run) of a finished run.

    ``library`` when the definition the run recorded (its result's ``inputs``) has the same
    content hash as the library file of that name, as shipped now, resolved at the same start
    date: the name alone proves nothing. Results never change, so the answer is memoised.
    """
    from scenarios import load_library_scenario, resolve

    key = (str(settings.home), int(run_id), _library_key())
    if key in _ORIGINS:
        return _ORIGINS[key]
    path = results_dir(settings) / f"{int(run_id)}.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    inputs = result.get("inputs") or {}
    digest = definition_sha256(inputs) if inputs else None
    origin = "custom"
    if digest and inputs.get("name") and inputs.get("as_of"):
        try:
            library = load_library_scenario(str(inputs["name"]))
            expected = resolve(library, as_of=inputs["as_of"]).to_dict()
        except Exception:  # no such library file, or it does not resolve at that date
            expected = None
        if expected is not None and definition_sha256(expected) == digest:
            origin = "library"
    if len(_ORIGINS) > 4096:
        _ORIGINS.clear()
    _ORIGINS[key] = (origin, digest)
    return origin, digest


def _marker(settings: Settings, run_id: int) -> Path:
    return results_dir(settings) / f"publication-{int(run_id)}.json"


def read_publication(settings: Settings, run_id: int) -> dict | None:
    """An admin's decision on a run (``published`` true or false, by, role, at), or None."""
    path = _marker(settings, run_id)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_publication(settings: Settings, run_id: int, decision: dict) -> None:
    """Written then renamed in the results folder: its modification time, part of the
    response cache's freshness, changes with it, so every process drops its cached alerts."""
    folder = results_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".publication-{int(run_id)}.json.tmp"
    tmp.write_text(json.dumps(decision))
    os.replace(tmp, _marker(settings, run_id))


def _root_trigger(engine, run: dict) -> str:
    """The trigger of the run a retry repeats (a retry keeps its origin)."""
    from service.jobs import get_run

    seen = 0
    while run.get("trigger") == "retry" and run.get("retry_of") and seen < 20:
        parent = get_run(engine, run["retry_of"])
        if parent is None:
            break
        run, seen = parent, seen + 1
    return str(run.get("trigger") or "")


def publication_of(run: dict, settings: Settings | None = None, engine=None) -> dict:
    """Where a run stands: ``origin`` (``library``: the content of a library file as shipped
    now; ``custom`` otherwise), ``service_run``, the admin's ``published`` decision (None when
    none) and ``public`` (the decision if any, else library content run by the service)."""
    settings = settings or state().settings
    engine = engine or state().engine
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


def public_runs(scenario: str | None = None):
    """Finished scenario runs the public may see, newest first (optionally of one scenario).

    Only the service's own runs and runs an admin decided on are read from the database, so
    that any number of planners' runs can never push a public run out of view.
    """
    import sqlalchemy as sa

    from service.db import job_runs

    settings, engine = state().settings, state().engine
    decided = []
    folder = results_dir(settings)
    if folder.is_dir():
        for path in folder.glob("publication-*.json"):
            try:
                decided.append(int(path.stem.split("-", 1)[1]))
            except ValueError:
                continue
    where = [job_runs.c.job == "scenario", job_runs.c.status == "ok",
             sa.or_(job_runs.c.trigger.in_(sorted(SERVICE_TRIGGERS | {"retry"})),
                    job_runs.c.id.in_(decided))]
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


class LibraryItem(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)


class LibraryOut(Schema):
    items = fields.List(fields.Nested(LibraryItem), required=True)


def _definition_doc() -> str:
    from scenarios.params import EpiParameters
    from scenarios.schema import (
        MAX_CELLS,
        MAX_INTERVENTIONS,
        MAX_SPAN_DAYS,
        MAX_TERRITORIES,
        SCHEMA,
    )

    params = SCHEMA["properties"]["parameters"]["properties"]
    top = SCHEMA["properties"]
    return (
        "a scenario definition (same schema as the YAML library files, scenarios/README.md). "
        f"Bounds: at most {MAX_TERRITORIES} territories, {MAX_INTERVENTIONS} interventions "
        f"of at most {MAX_SPAN_DAYS} days, {top['n_samples']['maximum']} samples, "
        f"{top['horizon_days']['maximum']} days of horizon; truncations max_gi ≤ "
        f"{params['max_gi']['maximum']}, max_delay ≤ {params['max_delay']['maximum']}, "
        f"max_los ≤ {params['max_los']['maximum']} days (defaults {EpiParameters.max_gi}, "
        f"{EpiParameters.max_delay}, {EpiParameters.max_los}); dates in 2000-2099; and "
        f"territories × n_samples × (7 + max_delay + horizon_days) at most {MAX_CELLS:,} "
        "(a group counts its members: departments 101, regions 18). Bodies over 1 MiB "
        "(413) or nested deeper than 32 levels (400) are refused before being read.")


DEFINITION_DOC = _definition_doc()


class ScenarioRunIn(Schema):
    name = fields.String(validate=Length(1, 100), metadata={
        "description": "a library scenario (see GET /scenarios)"})
    definition = fields.Dict(metadata={"description": DEFINITION_DOC})
    as_of = fields.Date(validate=Range(min=dt.date(2000, 1, 1), max=dt.date(2099, 12, 31)),
                        metadata={"description": "start date, 2000-2099 (default: the "
                                                 "definition's, else the day after the last "
                                                 "data)"})


class ScenarioRun(Schema):
    run_id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={
        "description": "queued, running, ok, failed, interrupted"})
    scenario = fields.String(allow_none=True, required=True)
    submitted_by = fields.String(allow_none=True, required=True)
    queued_at = fields.String(required=True)
    started_at = fields.String(allow_none=True, required=True)
    finished_at = fields.String(allow_none=True, required=True)
    error = fields.String(allow_none=True, required=True)
    vintage = fields.Raw(allow_none=True, required=True)
    as_of = fields.String(allow_none=True, required=True)
    summary = fields.Dict(allow_none=True, required=True, metadata={
        "description": "territory → r_now and r_now_admissions (quantiles q05, median, q95), "
                       "r_basis (basis: cases or admissions, source: the territory whose R "
                       "gives the level, r_source: its R, shrink: share of a département's own "
                       "deviation kept, note: why cases were not used) and, per indicator "
                       "(inc_hosp, hosp, icu), peak, capacity, probability of exceeding it"})
    levers = fields.Dict(allow_none=True, required=True, metadata={
        "description": "the vaccination and variant levers the run used (coverage and share "
                       "now per territory, priors and their sources); {} when none"})
    origin = fields.String(required=True, metadata={
        "description": "library: the definition run has the content hash of a library file "
                       "as shipped; custom: anything else (edited, or submitted)"})
    public = fields.Boolean(required=True, metadata={
        "description": "whether the public sees this run's figures (the scenario alert of "
                       "/alerts): " + PUBLIC_RULE})
    publication = fields.Dict(required=True, metadata={
        "description": "published (true/false: an admin's decision, null: none), by, role, "
                       "at, service_run (started by the service, not submitted through the "
                       "API), definition_sha256"})
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class ScenarioRunList(Schema):
    items = fields.List(fields.Nested(ScenarioRun), required=True)
    pagination = fields.Nested(PageInfo, required=True)


class ScenarioTrajectoryQuery(PageQuery):
    territory = fields.String(validate=Length(1, 2000))
    indicator = fields.String(validate=Length(1, 64))
    format = fields.String(load_default="json", validate=OneOf(["json", "csv"]))
    sep = fields.String(load_default=None, validate=OneOf([",", ";"]))
    decimal = fields.String(load_default=None, validate=OneOf([".", ","]))


class TrajectoryRow(Schema):
    territory = fields.String(required=True)
    indicator = fields.String(required=True)
    date = fields.String(required=True)
    quantile = fields.Float(required=True)
    value = fields.Float(allow_none=True, required=True)


class TrajectoryOut(Schema):
    run_id = fields.Integer(required=True)
    items = fields.List(fields.Nested(TrajectoryRow), required=True)
    pagination = fields.Nested(PageInfo, required=True)


class CompareQuery(Schema):
    runs = fields.String(required=True, validate=[Length(1, 200), Regexp(r"^\d+(,\d+)*$")],
                         metadata={"description": "comma-separated run ids (2 to 6)"})
    territory = fields.String(validate=Length(1, 10), metadata={"description": "default FR"})


class CompareOut(Schema):
    territory = fields.String(required=True)
    runs = fields.List(fields.Dict(), required=True, metadata={
        "description": "per run: id, scenario, as_of, status, that territory's summary and "
                       "the levers used"})


RUNS_DOC = ("Analysts and above see every run, planners' custom runs included, each marked "
            "with its origin and whether it is public. Anonymous callers read no run (401): "
            "the public sees scenario figures only through /alerts?source=scenario, built "
            "from public runs alone. " + PUBLIC_RULE[0].upper() + PUBLIC_RULE[1:] + ".")


NOT_FINISHED = "The run is not finished (queued, running, failed): code not_finished"


def _library() -> list[dict]:
    from scenarios import list_library

    return [{"name": s["name"], "description": s.get("description", "")}
            for s in list_library()]


@bp.get("")
@bp.output(LibraryOut)
@bp.doc(summary="The scenario library")
@cached
def library():
    return render({"items": _library()}, {})


def _run_out(run: dict, with_summary: bool = True) -> dict:
    params = run.get("params") or {}
    result = run.get("result") or {}
    summary = levers = None
    if with_summary and run["status"] == "ok":
        stored = load_result(run["id"]) or {}
        summary, levers = stored.get("summary"), stored.get("levers", {})
    note(vintage_id=str(result.get("vintage") or "") or None)
    return {
        "run_id": run["id"], "status": run["status"],
        "scenario": result.get("scenario") or params.get("name")
        or (params.get("definition") or {}).get("name"),
        "submitted_by": run.get("requested_by"), "queued_at": run["queued_at"],
        "started_at": run.get("started_at"), "finished_at": run.get("finished_at"),
        # Tracebacks stay in the job history for admins; users get the last line.
        "error": (run.get("error") or "").strip().splitlines()[-1] if run.get("error") else None,
        "vintage": result.get("vintage"), "as_of": result.get("as_of") or params.get("as_of"),
        "summary": summary, "levers": levers, **publication_of(run),
        "links": {"self": url_for("scenarios.get_run", run_id=run["id"]),
                  "trajectories": url_for("scenarios.get_trajectories", run_id=run["id"])},
    }


def _get_scenario_run(run_id: int) -> dict:
    from service.jobs import get_run

    run = get_run(state().engine, run_id)
    if run is None or run["job"] != "scenario":
        raise not_found(f"no scenario run {run_id}")
    return run


@bp.post("/runs")
@bp.input(ScenarioRunIn, location="json")
@bp.output(ScenarioRun, status_code=202)
@bp.doc(summary="Run a scenario (queued; poll the returned run)")
@requires("planner")
def submit_run(json_data: dict):
    from scenarios import ScenarioValidationError, load_library_scenario, validate_definition
    from service.jobs import enqueue, get_run

    name, definition = json_data.get("name"), json_data.get("definition")
    if bool(name) == bool(definition):
        raise bad_request("give either 'name' (a library scenario) or 'definition'")
    try:
        if name:
            load_library_scenario(name)
        else:
            definition = validate_definition(definition, "request body")
    except KeyError as exc:
        raise bad_request(f"no library scenario named {name!r}",
                          library=[s["name"] for s in _library()]) from exc
    except ScenarioValidationError as exc:
        raise bad_request("the scenario definition is not valid",
                          errors=list(getattr(exc, "errors", [str(exc)]))) from exc
    params: dict[str, Any] = {"name": name, "definition": definition,
                              "as_of": str(json_data["as_of"]) if json_data.get("as_of")
                              else None}
    run_id = enqueue(state().engine, "scenario", params, trigger="api",
                     requested_by=current_principal().name)
    response = json_response(_run_out(get_run(state().engine, run_id)), status=202)
    response.headers["Location"] = url_for("scenarios.get_run", run_id=run_id)
    return response


@bp.get("/runs")
@bp.input(PageQuery, location="query")
@bp.output(ScenarioRunList)
@bp.doc(summary="Scenario runs, newest first", description=RUNS_DOC)
@requires("analyst")
def list_runs(query_data: dict):
    from service.jobs import list_runs as _list

    limit, offset = page_window(query_data)
    runs, total = _list(state().engine, job="scenario", limit=limit, offset=offset)
    return json_response({"items": [_run_out(r, with_summary=False) for r in runs],
                          "pagination": page_info(query_data, total)})


@bp.get("/runs/<int:run_id>")
@bp.output(ScenarioRun)
@bp.doc(summary="One scenario run: status and summary", description=RUNS_DOC)
@requires("analyst")
def get_run(run_id: int):
    return json_response(_run_out(_get_scenario_run(run_id)))


def _decide(run_id: int, published: bool):
    """Record an admin's decision on a run: audit row, then the marker the public reads."""
    from flask import request

    from features.catalog import utcnow
    from service.audit import record

    st = state()
    run = _get_scenario_run(run_id)
    if run["status"] != "ok":
        raise ApiError(409, "not_finished", f"scenario run {run_id} is {run['status']}: only "
                       "a finished run can be published or withdrawn", {"status": run["status"]})
    principal = current_principal()
    previous = read_publication(st.settings, run_id)
    write_publication(st.settings, run_id, {"published": published, "by": principal.name,
                                            "role": principal.role,
                                            "at": utcnow().isoformat()})
    out = _run_out(run, with_summary=False)
    try:
        record(st.engine, event="scenario_published" if published else "scenario_unpublished",
               actor=principal.name, role=principal.role, method=request.method,
               path=request.path[:2000], status=200,
               vintage_id=str((run.get("result") or {}).get("vintage") or "")[:64] or None,
               run_id=f"scenario:{run_id}",
               details={"scenario": out["scenario"], "as_of": out["as_of"],
                        "origin": out["origin"], "public": out["public"],
                        "definition_sha256": out["publication"]["definition_sha256"]})
    except Exception:  # no audit row, no publication
        if previous is None:
            _marker(st.settings, run_id).unlink(missing_ok=True)
        else:
            write_publication(st.settings, run_id, previous)
        raise
    return json_response(out)


PUBLISH_DOC = ("Admins only; audited (audit event scenario_published / scenario_unpublished). "
               + PUBLIC_RULE[0].upper() + PUBLIC_RULE[1:] + ". The decision overrides the "
               "rule for that run; the public scenario alert is the newest public status_quo "
               "run covering the territories.")


@bp.post("/runs/<int:run_id>/publish")
@bp.output(ScenarioRun)
@bp.doc(summary="Publish a finished run: its figures become public",
        description=PUBLISH_DOC, responses={409: NOT_FINISHED})
@requires("admin")
def publish_run(run_id: int):
    return _decide(run_id, True)


@bp.post("/runs/<int:run_id>/unpublish")
@bp.output(ScenarioRun)
@bp.doc(summary="Withdraw a run from the public (published or library run)",
        description=PUBLISH_DOC, responses={409: NOT_FINISHED})
@requires("admin")
def unpublish_run(run_id: int):
    return _decide(run_id, False)


@bp.get("/runs/<int:run_id>/trajectories")
@bp.input(ScenarioTrajectoryQuery, location="query")
@bp.output(TrajectoryOut)
@bp.doc(summary="Quantile trajectories of a finished run", description=RUNS_DOC,
        responses={409: NOT_FINISHED})
@requires("analyst")
@cached
def get_trajectories(run_id: int, query_data: dict):
    run = _get_scenario_run(run_id)
    if run["status"] != "ok":
        raise ApiError(409, "not_finished", f"scenario run {run_id} is {run['status']}",
                       {"status": run["status"]})
    rows = (load_result(run_id) or {}).get("trajectories") or []
    codes = parse_codes(query_data.get("territory"))
    if codes:
        wanted = set(codes)
        rows = [r for r in rows if r.get("territory") in wanted]
    if query_data.get("indicator"):
        rows = [r for r in rows if r.get("indicator") == query_data["indicator"]]
    if query_data.get("format") == "csv":
        return csv_response(rows, ["territory", "indicator", "date", "quantile", "value"],
                            f"vigie_scenario_{run_id}", query_data.get("sep"),
                            query_data.get("decimal"))
    items, info = paginate(rows, query_data)
    return json_response({"run_id": run_id, "items": items, "pagination": info})


@bp.get("/compare")
@bp.input(CompareQuery, location="query")
@bp.output(CompareOut)
@bp.doc(summary="Compare scenario runs side by side for one territory", description=RUNS_DOC)
@requires("analyst")
def compare(query_data: dict):
    ids = list(dict.fromkeys(int(x) for x in query_data["runs"].split(",")))[:7]
    if not 2 <= len(ids) <= 6:
        raise bad_request("compare 2 to 6 runs", runs=ids)
    territory = query_data.get("territory") or "FR"
    out = []
    for run_id in ids:
        run = _get_scenario_run(run_id)
        entry = _run_out(run)
        summary = entry.pop("summary") or {}
        out.append({"run_id": run_id, "scenario": entry["scenario"], "status": run["status"],
                    "as_of": entry["as_of"], "vintage": entry["vintage"],
                    "summary": summary.get(territory), "levers": entry["levers"]})
    return json_response({"territory": territory, "runs": out})
