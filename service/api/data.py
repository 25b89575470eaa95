"""``/api/v1/data``: one indicator's series for territories × a date range, as known on a date.

``as_of`` reads the cube as it was known then (the latest vintage issued on or before it,
observations dated before it), so an answer can be reproduced for an audit. For the public,
commune-level series are refused and counts below the small-count threshold are suppressed
(``value: null, suppressed: true``), with the cells that would give them back by differencing
and the rates computed from hidden counts (docs/DISCLOSURE.md). A région or France total that
Vigie computes from its children (none is published) is served only on dates when all of them
report; otherwise the row says why: ``value: null, reason: "incomplete", coverage:
{reporting: n, children: m}``
(:func:`features.cube.totals_coverage`).

A département's or EPCI's sum of its communes also says how much of it is covered
(``coverage.members``, ``coverage.population_share``); counts that add up carry ``per_100k``.

The blueprint parses the request, calls :func:`service.usecases.data_reads.series` and renders
one row per observation (JSON, or CSV with the coverage as ``reporting``, ``children``,
``members`` and ``population_share``).
"""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.cache import cached
from service.api.context import context
from service.api.formats import render
from service.api.lookups import FREQUENCIES
from service.api.paging import ListQuery, PageInfo, paged
from service.usecases.data_reads import series

PREFIX = "data"
bp = APIBlueprint("data", __name__, tag="data")
#: The coverage of a computed total as CSV columns.
COVERAGE_COLUMNS = ("reporting", "children", "members", "population_share")


class DataQuery(ListQuery):
    indicator = fields.String(required=True, validate=Length(1, 64),
                              metadata={"description": "indicator name (see /indicators)"})
    territory = fields.String(validate=Length(1, 2000), metadata={
        "description": "comma-separated territory codes (default: all served to you)"})
    start = fields.Date(metadata={"description": "first date (YYYY-MM-DD), inclusive"})
    end = fields.Date(metadata={"description": "last date (YYYY-MM-DD), inclusive"})
    as_of = fields.Date(metadata={"description": "read the data as known on this date"})
    frequency = fields.String(validate=OneOf(FREQUENCIES), metadata={
        "description": "when the indicator exists at several (inc_hosp daily and weekly); "
                       "default: the finest"})


class Coverage(Schema):
    reporting = fields.Integer(required=True, metadata={
        "description": "children (départements, reporting collectivités; communes for a "
                       "département's or an EPCI's sum of communes) with a value that date"})
    children = fields.Integer(required=True, metadata={
        "description": "children the total needs"})
    members = fields.Integer(metadata={
        "description": "sum of communes only: the territory's communes (the total sums the "
                       "`children` that report the indicator)"})
    population_share = fields.Float(allow_none=True, metadata={
        "description": "sum of communes only: share of the territory's population living in "
                       "the communes summed; below 1 the value is the sum over those "
                       "communes, not the territory's total (docs/CUBE_CONTRACT.md)"})


class Observation(Schema):
    territory = fields.String(required=True)
    date = fields.String(required=True)
    value = fields.Float(allow_none=True, required=True)
    per_100k = fields.Float(allow_none=True, required=True, metadata={
        "description": "a count that adds up over territories, per 100,000 inhabitants of the "
                       "population it covers (a sum of communes: theirs); null for rates and "
                       "indices, hidden values and unknown populations"})
    suppressed = fields.Boolean(required=True)
    reason = fields.String(allow_none=True, required=True, metadata={
        "description": "why the value is null when it is not suppressed: 'incomplete' = a "
                       "total Vigie computes whose children did not all report that date"})
    coverage = fields.Nested(Coverage, allow_none=True, required=True, metadata={
        "description": "for a total Vigie computes from its children: how many reported "
                       "(n of m); null for published and base values"})


class ComputedTotals(Schema):
    territories = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                              metadata={"description": "territories of the answer whose values "
                                                       "Vigie sums (or averages) from their "
                                                       "children → children needed"})
    incomplete = fields.Integer(required=True, metadata={
        "description": "rows withheld (reason 'incomplete') because children were missing"})


class DataOut(Schema):
    indicator = fields.String(required=True)
    frequency = fields.String(required=True)
    label = fields.String(required=True, metadata={"description": "French name"})
    units = fields.String(required=True)
    units_fr = fields.String(required=True, metadata={"description": "French unit"})
    count = fields.Boolean(required=True, metadata={
        "description": "a count of people (small values suppressed for the public); rates, "
                       "R(t) and indices are not"})
    source = fields.String(required=True)
    licence = fields.String(required=True)
    vintage_id = fields.String(required=True)
    as_of = fields.String(allow_none=True, required=True)
    suppression_threshold = fields.Integer(allow_none=True, required=True, metadata={
        "description": "counts below this are hidden, and so are the cells and derived values "
                       "that would give them back (docs/DISCLOSURE.md); public answers of "
                       "suppressed indicators only, null otherwise"})
    computed_totals = fields.Nested(ComputedTotals, required=True, metadata={
        "description": "a total Vigie computes is served only on dates when all its children "
                       "report the indicator; a published total always wins"})
    items = fields.List(fields.Nested(Observation), required=True)
    pagination = fields.Nested(PageInfo, required=True)


@bp.get("")
@bp.input(DataQuery, location="query")
@bp.output(DataOut)
@bp.doc(summary="Series of one indicator",
        description="Territories × dates, tidy rows; `as_of` for the data as known then.")
@cached
def get_data(query_data: dict):
    answer = series(context(), indicator=query_data["indicator"],
                    frequency=query_data.get("frequency"), territory=query_data.get("territory"),
                    start=query_data.get("start"), end=query_data.get("end"),
                    as_of=query_data.get("as_of"))
    page = paged(answer, query_data)
    if query_data.get("format") == "csv":
        for row in page["items"]:
            row.update({key: (row["coverage"] or {}).get(key) for key in COVERAGE_COLUMNS})
    return render(page, query_data,
                  columns=["territory", "date", "value", "per_100k", "suppressed", "reason",
                           *COVERAGE_COLUMNS], filename=f"vigie_{answer['indicator']}")
