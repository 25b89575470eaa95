"""``/api/v1/audit`` (admin): the audit trail, newest first."""

from __future__ import annotations

from functools import partial

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length

from service.api.formats import json_response
from service.api.paging import PageInfo, PageQuery, stored_page
from service.api.state import state
from service.audit import query
from service.auth import requires

PREFIX = "audit"
bp = APIBlueprint("audit", __name__, tag="audit")


class AuditQuery(PageQuery):
    actor = fields.String(validate=Length(1, 100))
    event = fields.String(validate=Length(1, 32))


class AuditRow(Schema):
    id = fields.Integer(required=True)
    at = fields.String(required=True)
    event = fields.String(required=True)
    actor = fields.String(required=True)
    role = fields.String(required=True)
    method = fields.String(allow_none=True)
    path = fields.String(allow_none=True)
    query = fields.String(allow_none=True)
    status = fields.Integer(allow_none=True)
    vintage_id = fields.String(allow_none=True)
    model_version = fields.String(allow_none=True)
    run_id = fields.String(allow_none=True)
    remote_addr = fields.String(allow_none=True)
    details = fields.Raw(allow_none=True)


class AuditList(Schema):
    items = fields.List(fields.Nested(AuditRow), required=True)
    pagination = fields.Nested(PageInfo, required=True)


@bp.get("")
@bp.input(AuditQuery, location="query")
@bp.output(AuditList)
@bp.doc(summary="Audit trail: who asked what, and from which vintage and model version")
@requires("admin")
def list_audit(query_data: dict):
    return json_response(stored_page(query_data, partial(
        query, state().engine, actor=query_data.get("actor"), event=query_data.get("event"))))
