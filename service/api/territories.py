"""``/api/v1/territories``: the hierarchy (commune → département → région → France) and
populations (INSEE legal population 2020) of the served cube vintage."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.cache import cached
from service.api.formats import render
from service.api.lookups import territory_table
from service.api.paging import ListQuery, PageInfo, paginate
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


class TerritoryList(Schema):
    items = fields.List(fields.Nested(TerritoryOut), required=True)
    pagination = fields.Nested(PageInfo, required=True)


class TerritoryDetail(TerritoryOut):
    ancestors = fields.List(fields.Nested(TerritoryOut), required=True,
                            metadata={"description": "parent, grand-parent… up to FR"})
    children = fields.List(fields.Nested(TerritoryOut), required=True)


COLUMNS = ["code", "name", "level", "parent", "population"]


@bp.get("")
@bp.input(TerritoryQuery, location="query")
@bp.output(TerritoryList)
@bp.doc(summary="List territories", description="Filter by level, parent or name.")
@cached
def list_territories(query_data: dict):
    rows = list(territory_table().values())
    if query_data.get("level"):
        rows = [r for r in rows if r["level"] == query_data["level"]]
    if query_data.get("parent") is not None:
        rows = [r for r in rows if r["parent"] == query_data["parent"]]
    if query_data.get("q"):
        needle = query_data["q"].casefold()
        rows = [r for r in rows if needle in r["name"].casefold()]
    items, info = paginate(rows, query_data)
    return render({"items": items, "pagination": info}, query_data, columns=COLUMNS,
                  filename="territories")


@bp.get("/<code>")
@bp.output(TerritoryDetail)
@bp.doc(summary="One territory, its ancestors and children")
@cached
def get_territory(code: str):
    table = territory_table()
    row = table.get(code)
    if row is None:
        raise not_found(f"no territory with code {code!r}", code=code)
    ancestors, parent = [], row["parent"]
    while parent and parent in table and len(ancestors) < 6:
        ancestors.append(table[parent])
        parent = table[parent]["parent"]
    children = [r for r in table.values() if r["parent"] == code]
    return render({**row, "ancestors": ancestors, "children": children}, {})
