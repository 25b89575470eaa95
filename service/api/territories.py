"""``/api/v1/territories``: the hierarchy (commune → département → région → France) and
populations (INSEE legal population 2020) of the served cube vintage, and every EPCI of its
registry (level ``epci``) with its member communes (``communes``; the detail of an EPCI lists
them as its children): the groupement tree, docs/CUBE_CONTRACT.md."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.cache import cached
from service.api.formats import render
from service.api.lookups import groupements, territory_table
from service.api.paging import ListQuery, PageInfo, render_page
from service.errors import not_found

PREFIX = "territories"
bp = APIBlueprint("territories", __name__, tag="territories")
LEVELS = ("commune", "epci", "department", "collectivity", "region", "country")


class TerritoryQuery(ListQuery):
    level = fields.String(validate=OneOf(LEVELS), metadata={"description": "territory level"})
    parent = fields.String(validate=Length(1, 10), metadata={"description": "parent code"})
    q = fields.String(validate=Length(1, 100),
                      metadata={"description": "part of the name (case-insensitive)"})


class TerritoryOut(Schema):
    code = fields.String(required=True, metadata={"description": "INSEE code; R+code for "
                                                                 "régions; FR; SIREN for EPCI"})
    name = fields.String(required=True)
    level = fields.String(required=True)
    parent = fields.String(required=True, metadata={"description": "'' for FR"})
    population = fields.Float(allow_none=True, required=True,
                              metadata={"description": "INSEE legal population 2020"})
    communes = fields.List(fields.String(), metadata={
        "description": "EPCI only: its member communes (INSEE codes)"})


class TerritoryList(Schema):
    items = fields.List(fields.Nested(TerritoryOut), required=True)
    pagination = fields.Nested(PageInfo, required=True)


class TerritoryDetail(TerritoryOut):
    ancestors = fields.List(fields.Nested(TerritoryOut), required=True,
                            metadata={"description": "parent, grand-parent… up to FR"})
    children = fields.List(fields.Nested(TerritoryOut), required=True)


COLUMNS = ["code", "name", "level", "parent", "population"]


def _groupements() -> dict[str, dict]:
    """Every EPCI of the served vintage's registry with its communes
    (:func:`service.api.lookups.groupements`)."""
    return groupements()


def _rows() -> list[dict]:
    """The cube's territories, each EPCI with its communes, then the registry's other EPCIs."""
    table, groups = territory_table(), _groupements()
    rows = [{**r, "communes": [c["code"] for c in groups[code]["communes"]]}
            if code in groups else r for code, r in table.items()]
    return rows + [{**{k: v for k, v in g.items() if k != "communes"},
                    "communes": [c["code"] for c in g["communes"]]}
                   for code, g in groups.items() if code not in table]


@bp.get("")
@bp.input(TerritoryQuery, location="query")
@bp.output(TerritoryList)
@bp.doc(summary="List territories", description="Filter by level, parent or name.")
@cached
def list_territories(query_data: dict):
    rows = _rows()
    if query_data.get("level"):
        rows = [r for r in rows if r["level"] == query_data["level"]]
    if query_data.get("parent") is not None:
        rows = [r for r in rows if r["parent"] == query_data["parent"]]
    if query_data.get("q"):
        needle = query_data["q"].casefold()
        rows = [r for r in rows if needle in r["name"].casefold()]
    return render_page(rows, query_data, columns=COLUMNS, filename="territories")


@bp.get("/<code>")
@bp.output(TerritoryDetail)
@bp.doc(summary="One territory, its ancestors and children")
@cached
def get_territory(code: str):
    table, groups = territory_table(), _groupements()
    row = table.get(code)
    if row is None and code in groups:
        row = {k: v for k, v in groups[code].items() if k != "communes"}
    if row is None:
        raise not_found(f"no territory with code {code!r}", code=code)
    ancestors, parent = [], row["parent"]
    while parent and parent in table and len(ancestors) < 6:
        ancestors.append(table[parent])
        parent = table[parent]["parent"]
    children = [r for r in table.values() if r["parent"] == code]
    if code in groups:  # an EPCI's children are its member communes (the groupement)
        children = groups[code]["communes"]
        row = {**row, "communes": [c["code"] for c in children]}
    return render({**row, "ancestors": ancestors, "children": children}, {})
