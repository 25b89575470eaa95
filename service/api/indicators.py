"""``/api/v1/indicators``: every cube variable with units, source, licence, aggregation and
the dates it is observed over."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import OneOf

from service.api.cache import cached
from service.api.formats import render
from service.api.lookups import FREQUENCIES, find_indicator, indicator_catalog, indicator_entries
from service.api.paging import ListQuery, PageInfo, render_page
from service.errors import not_found

PREFIX = "indicators"
bp = APIBlueprint("indicators", __name__, tag="indicators")


class IndicatorQuery(ListQuery):
    frequency = fields.String(validate=OneOf(FREQUENCIES))


class IndicatorOut(Schema):
    name = fields.String(required=True)
    frequency = fields.String(required=True)
    label = fields.String(required=True, metadata={"description": "French name"})
    units_fr = fields.String(required=True, metadata={"description": "French unit"})
    units = fields.String(required=True)
    description = fields.String(required=True)
    source = fields.String(required=True)
    licence = fields.String(required=True)
    aggregation = fields.String(required=True, metadata={
        "description": "sum, population_mean, national or none"})
    count = fields.Boolean(required=True, metadata={
        "description": "a count of people: small values are suppressed for the public"})
    first_date = fields.String(allow_none=True, required=True)
    last_date = fields.String(allow_none=True, required=True)
    territories = fields.Integer(required=True)


class IndicatorList(Schema):
    items = fields.List(fields.Nested(IndicatorOut), required=True)
    pagination = fields.Nested(PageInfo, required=True)


COLUMNS = list(IndicatorOut().fields)


@bp.get("")
@bp.input(IndicatorQuery, location="query")
@bp.output(IndicatorList)
@bp.doc(summary="List indicators")
@cached
def list_indicators(query_data: dict):
    rows = list(indicator_entries())
    if query_data.get("frequency"):
        rows = [r for r in rows if r["frequency"] == query_data["frequency"]]
    return render_page(rows, query_data, columns=COLUMNS, filename="indicators")


class OneIndicatorQuery(Schema):
    frequency = fields.String(validate=OneOf(FREQUENCIES), metadata={
        "description": "when the name exists at several (default: the finest)"})


@bp.get("/<name>")
@bp.input(OneIndicatorQuery, location="query")
@bp.output(IndicatorOut)
@bp.doc(summary="One indicator")
@cached
def get_indicator(name: str, query_data: dict):
    row = find_indicator(name, query_data.get("frequency"))
    if row is None:
        raise not_found(f"no indicator named {name!r}", known=sorted(indicator_catalog()))
    return render(row, {})
