"""``/api/v1/jobs`` (admin): the timetable, the history of runs, and "run now"."""

from __future__ import annotations

from functools import partial

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf
from flask import url_for

from service.api.formats import json_response
from service.api.paging import PageInfo, PageQuery, stored_page
from service.api.state import state
from service.auth import current_principal, requires
from service.errors import not_found

PREFIX = "jobs"
bp = APIBlueprint("jobs", __name__, tag="jobs")

STATUSES = ("queued", "running", "ok", "failed", "interrupted", "coalesced")


class JobRun(Schema):
    id = fields.Integer(required=True)
    job = fields.String(required=True)
    status = fields.String(required=True)
    trigger = fields.String(required=True)
    attempt = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)
    params = fields.Dict(allow_none=True)
    requested_by = fields.String(allow_none=True)
    queued_at = fields.String(required=True)
    not_before = fields.String(required=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    worker = fields.String(allow_none=True)
    fence = fields.Integer(allow_none=True, metadata={
        "description": "epoch of the scheduler lease the run was claimed under (null: claimed "
                       "without the lease, e.g. by the command line)"})
    error = fields.String(allow_none=True)
    result = fields.Raw(allow_none=True)
    retry_of = fields.Integer(allow_none=True)


class JobOut(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)
    schedule = fields.Dict(allow_none=True, required=True)
    next_run_time = fields.String(allow_none=True, required=True)
    max_attempts = fields.Integer(required=True)
    params = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    last_run = fields.Nested(JobRun, allow_none=True, required=True)


class SchedulerOut(Schema):
    holder = fields.String(allow_none=True, required=True)
    lease_expires_at = fields.String(allow_none=True, required=True)
    lease_epoch = fields.Integer(allow_none=True, required=True, metadata={
        "description": "grows by one at every change of holder (the runs' fencing token)"})
    alive = fields.Boolean(required=True)
    this_process_leads = fields.Boolean(required=True)


class JobList(Schema):
    scheduler = fields.Nested(SchedulerOut, required=True)
    items = fields.List(fields.Nested(JobOut), required=True)


class JobRunsQuery(PageQuery):
    job = fields.String(validate=Length(1, 64))
    status = fields.String(validate=OneOf(STATUSES))


class JobRunList(Schema):
    items = fields.List(fields.Nested(JobRun), required=True)
    pagination = fields.Nested(PageInfo, required=True)


class TriggerIn(Schema):
    params = fields.Dict(load_default=dict, metadata={
        "description": "job parameters (see each job's `params`)"})


@bp.get("")
@bp.output(JobList)
@bp.doc(summary="Jobs: timetable, last runs, scheduler lease")
@requires("admin")
def list_jobs():
    from service.jobs import JOBS, last_runs, lock_holder

    st = state()
    last = last_runs(st.engine)
    next_times = {j["id"]: j["next_run_time"] for j in st.scheduler.jobs()} \
        if st.scheduler is not None else {}
    holder = lock_holder(st.engine)
    items = [{"name": spec.name, "description": spec.description, "schedule": spec.schedule,
              "next_run_time": next_times.get(spec.name), "max_attempts": spec.max_attempts,
              "params": spec.params_doc, "last_run": last.get(spec.name)}
             for spec in JOBS.values()]
    return json_response({
        "scheduler": {"holder": holder["holder"] if holder else None,
                      "lease_expires_at": holder["expires_at"].isoformat() if holder else None,
                      "lease_epoch": holder["epoch"] if holder else None,
                      "alive": bool(holder and holder["alive"]),
                      "this_process_leads": bool(st.scheduler and st.scheduler.is_leader)},
        "items": items})


@bp.get("/runs")
@bp.input(JobRunsQuery, location="query")
@bp.output(JobRunList)
@bp.doc(summary="Job run history, newest first")
@requires("admin")
def list_job_runs(query_data: dict):
    from service.jobs import list_runs

    return json_response(stored_page(query_data, partial(
        list_runs, state().engine, query_data.get("job"), query_data.get("status"))))


@bp.get("/runs/<int:run_id>")
@bp.output(JobRun)
@bp.doc(summary="One job run")
@requires("admin")
def get_job_run(run_id: int):
    from service.jobs import get_run

    run = get_run(state().engine, run_id)
    if run is None:
        raise not_found(f"no job run {run_id}")
    return json_response(run)


@bp.post("/<name>/run")
@bp.input(TriggerIn, location="json")
@bp.output(JobRun, status_code=202)
@bp.doc(summary="Run a job now (queued for the scheduler's worker)")
@requires("admin")
def trigger(name: str, json_data: dict):
    from service.jobs import JOBS, enqueue, get_run

    if name not in JOBS:
        raise not_found(f"no job named {name!r}", known=sorted(JOBS))
    run_id = enqueue(state().engine, name, json_data.get("params") or {}, trigger="manual",
                     requested_by=current_principal().name)
    response = json_response(get_run(state().engine, run_id), status=202)
    response.headers["Location"] = url_for("jobs.get_job_run", run_id=run_id)
    return response
