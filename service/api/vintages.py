"""``/api/v1/vintages``: the cube's immutable versions, newest first."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields

from service.api.cache import cached
from service.api.disclosure_view import is_public
from service.api.formats import render
from service.api.lookups import current_vintage
from service.api.paging import ListQuery, PageInfo, render_page
from service.api.state import state
from service.errors import not_found

PREFIX = "vintages"
bp = APIBlueprint("vintages", __name__, tag="vintages")


class VintageOut(Schema):
    id = fields.String(required=True)
    issued_at = fields.String(required=True)
    current = fields.Boolean(required=True)
    files = fields.Integer(required=True, metadata={"description": "input files used"})
    sources = fields.Dict(keys=fields.String(), metadata={
        "description": "per source: status, rows, dates, warnings"})
    row_counts = fields.Dict(keys=fields.String(), metadata={
        "description": "frequency → indicator → observed cells"})
    checksums = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True,
                            metadata={"description": "file → sha256 (authenticated callers)"})


class VintageList(Schema):
    items = fields.List(fields.Nested(VintageOut), required=True)
    pagination = fields.Nested(PageInfo, required=True)


def _out(row: dict, current_id: str) -> dict:
    return {
        "id": row["id"], "issued_at": row["issued_at"].isoformat(),
        "current": row["id"] == current_id, "files": len(row.get("files") or {}),
        "sources": row.get("sources") or {}, "row_counts": row.get("row_counts") or {},
        # Checksums name the server's files: useful to auditors, not to the public.
        "checksums": None if is_public() else {
            name: info.get("sha256", "") for name, info in (row.get("files") or {}).items()},
    }


@bp.get("")
@bp.input(ListQuery, location="query")
@bp.output(VintageList)
@bp.doc(summary="List cube vintages")
@cached
def list_vintages(query_data: dict):
    current = current_vintage()
    rows = [_out(r, current["id"]) for r in state().store.list_vintages()]
    return render_page(rows, query_data, columns=["id", "issued_at", "current", "files"],
                       filename="vintages")


@bp.get("/<vintage_id>")
@bp.output(VintageOut)
@bp.doc(summary="One cube vintage")
@cached
def get_vintage(vintage_id: str):
    current = current_vintage()
    row = next((r for r in state().store.list_vintages() if r["id"] == vintage_id), None)
    if row is None:
        raise not_found(f"no vintage {vintage_id!r}")
    return render(_out(row, current["id"]), {})
