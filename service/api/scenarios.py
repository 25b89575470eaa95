"""``/api/v1/scenarios``: the scenario library, runs submitted through the API, comparisons.

``POST /runs`` (planner or above) validates the definition (or library name) at once — a bad
definition is a 400 listing every problem — then queues a ``scenario`` job: the run happens in
the scheduler's worker, never in the request thread. The answer (202) gives the run id to poll.
Results are stored as JSON under ``$VIGIE_HOME/scenario_runs/<id>.json`` (written then renamed).

Submitting, publishing and deciding which runs are public are the use cases'
(:mod:`service.usecases.scenarios`): this blueprint parses, calls them, and renders runs.
"""

from __future__ import annotations

import datetime as dt
from functools import partial

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf, Range, Regexp
from flask import request, url_for

from service.api.cache import cached
from service.api.formats import csv_response, json_response, render
from service.api.paging import PageInfo, PageQuery, paged, stored_page
from service.api.state import state
from service.audit import note
from service.auth import current_principal, requires
from service.errors import ApiError, bad_request, not_found
from service.usecases.reads import parse_codes
from service.usecases.scenarios import (
    PUBLIC_RULE,
    InvalidSubmission,
    NoSuchRun,
    NotFinished,
    decide_publication,
    load_result,
    publication_of,
    run_label,
    scenario_run,
)
from service.usecases.scenarios import library as library_items
from service.usecases.scenarios import submit_run as queue_run

PREFIX = "scenarios"
bp = APIBlueprint("scenarios", __name__, tag="scenarios")


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


@bp.get("")
@bp.output(LibraryOut)
@bp.doc(summary="The scenario library")
@cached
def library():
    return render({"items": library_items()}, {})


def _run_out(run: dict, with_summary: bool = True) -> dict:
    st = state()
    result = run.get("result") or {}
    summary = levers = None
    if with_summary and run["status"] == "ok":
        stored = load_result(st.settings, run["id"]) or {}
        summary, levers = stored.get("summary"), stored.get("levers", {})
    note(vintage_id=str(result.get("vintage") or "") or None)
    name, as_of = run_label(run)
    return {
        "run_id": run["id"], "status": run["status"], "scenario": name,
        "submitted_by": run.get("requested_by"), "queued_at": run["queued_at"],
        "started_at": run.get("started_at"), "finished_at": run.get("finished_at"),
        # Tracebacks stay in the job history for admins; users get the last line.
        "error": (run.get("error") or "").strip().splitlines()[-1] if run.get("error") else None,
        "vintage": result.get("vintage"), "as_of": as_of,
        "summary": summary, "levers": levers, **publication_of(run, st.settings, st.engine),
        "links": {"self": url_for("scenarios.get_run", run_id=run["id"]),
                  "trajectories": url_for("scenarios.get_trajectories", run_id=run["id"])},
    }


def _get_scenario_run(run_id: int) -> dict:
    run = scenario_run(state().engine, run_id)
    if run is None:
        raise not_found(f"no scenario run {run_id}")
    return run


@bp.post("/runs")
@bp.input(ScenarioRunIn, location="json")
@bp.output(ScenarioRun, status_code=202)
@bp.doc(summary="Run a scenario (queued; poll the returned run)")
@requires("planner")
def submit_run(json_data: dict):
    try:
        run_id = queue_run(state().engine, name=json_data.get("name"),
                           definition=json_data.get("definition"),
                           as_of=str(json_data["as_of"]) if json_data.get("as_of") else None,
                           requested_by=current_principal().name)
    except InvalidSubmission as exc:
        raise bad_request(exc.message, **exc.details) from exc
    response = json_response(_run_out(scenario_run(state().engine, run_id)), status=202)
    response.headers["Location"] = url_for("scenarios.get_run", run_id=run_id)
    return response


@bp.get("/runs")
@bp.input(PageQuery, location="query")
@bp.output(ScenarioRunList)
@bp.doc(summary="Scenario runs, newest first", description=RUNS_DOC)
@requires("analyst")
def list_runs(query_data: dict):
    from service.jobs import list_runs as _list

    page = stored_page(query_data, partial(_list, state().engine, job="scenario"))
    page["items"] = [_run_out(r, with_summary=False) for r in page["items"]]
    return json_response(page)


@bp.get("/runs/<int:run_id>")
@bp.output(ScenarioRun)
@bp.doc(summary="One scenario run: status and summary", description=RUNS_DOC)
@requires("analyst")
def get_run(run_id: int):
    return json_response(_run_out(_get_scenario_run(run_id)))


def _decide(run_id: int, published: bool):
    """Record an admin's decision on a run (the marker the public reads and its audit row:
    :func:`service.usecases.scenarios.decide_publication`); the run as it stands now."""
    st, principal = state(), current_principal()
    try:
        run = decide_publication(st.settings, st.engine, run_id, published,
                                 actor=principal.name, role=principal.role,
                                 method=request.method, path=request.path[:2000])
    except NoSuchRun as exc:
        raise not_found(f"no scenario run {run_id}") from exc
    except NotFinished as exc:
        raise ApiError(409, "not_finished", str(exc), {"status": exc.status}) from exc
    return json_response(_run_out(run, with_summary=False))


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
    rows = (load_result(state().settings, run_id) or {}).get("trajectories") or []
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
    return json_response(paged({"run_id": run_id, "rows": rows}, query_data))


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
