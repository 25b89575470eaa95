"""``/api/v1/scenarios``: the scenario library, runs submitted through the API, comparisons.

``POST /runs`` (planner or above) validates the definition (or library name) at once — a bad
definition is a 400 listing every problem — then queues a ``scenario`` job: the run happens in
the scheduler's worker, never in the request thread. The answer (202) gives the run id to poll.
Results are stored as JSON under ``$VIGIE_HOME/scenario_runs/<id>.json`` (written then renamed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf, Regexp
from flask import url_for

from features.settings import Settings
from service.api.common import (
    PageInfo,
    PageQuery,
    cached,
    csv_response,
    json_response,
    paginate,
    render,
    state,
)
from service.api.data import parse_codes
from service.audit import note
from service.auth import current_principal, requires
from service.errors import ApiError, bad_request, not_found

PREFIX = "scenarios"
bp = APIBlueprint("scenarios", __name__, tag="scenarios")


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
    tmp.write_text(json.dumps(_json_safe(result), default=str, allow_nan=False))
    os.replace(tmp, folder / f"{run_id}.json")
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


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return _json_safe(value.item())
        except (ValueError, AttributeError):
            return str(value)
    return value


def load_result(run_id: int) -> dict | None:
    path = results_dir(state().settings) / f"{run_id}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


class LibraryItem(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)


class LibraryOut(Schema):
    items = fields.List(fields.Nested(LibraryItem), required=True)


class ScenarioRunIn(Schema):
    name = fields.String(validate=Length(1, 100), metadata={
        "description": "a library scenario (see GET /scenarios)"})
    definition = fields.Dict(metadata={
        "description": "a scenario definition (same schema as the YAML library files)"})
    as_of = fields.Date(metadata={"description": "start date (default: the definition's, "
                                                 "else the day after the last data)"})


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
        "summary": summary, "levers": levers,
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
@bp.doc(summary="Scenario runs, newest first")
@requires("analyst")
def list_runs(query_data: dict):
    from service.jobs import list_runs as _list

    runs, total = _list(state().engine, job="scenario", limit=query_data["per_page"],
                        offset=(query_data["page"] - 1) * query_data["per_page"])
    info = {"page": query_data["page"], "per_page": query_data["per_page"], "total": total,
            "pages": max(1, -(-total // query_data["per_page"]))}
    return json_response({"items": [_run_out(r, with_summary=False) for r in runs],
                          "pagination": info})


@bp.get("/runs/<int:run_id>")
@bp.output(ScenarioRun)
@bp.doc(summary="One scenario run: status and summary")
@requires("analyst")
def get_run(run_id: int):
    return json_response(_run_out(_get_scenario_run(run_id)))


@bp.get("/runs/<int:run_id>/trajectories")
@bp.input(ScenarioTrajectoryQuery, location="query")
@bp.output(TrajectoryOut)
@bp.doc(summary="Quantile trajectories of a finished run")
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
@bp.doc(summary="Compare scenario runs side by side for one territory")
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
