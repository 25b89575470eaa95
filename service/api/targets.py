"""``/api/v1/targets``: every forecastable target of the served cube (built-in and derived
from indicator metadata), with French label and unit, horizons, levels, whether the refresh
publishes it, and the verdict of its track record against the baseline.

Not in the response cache: the verdict changes when the ``trackrecord`` job rewrites the
retrospective file, which is neither a vintage nor a forecast run (the listing itself is
memoised per vintage, the file read per request)."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.context import context
from service.api.formats import render
from service.api.paging import ListQuery, PageInfo, render_page
from service.usecases.targets import list_targets, target_entry

PREFIX = "targets"
bp = APIBlueprint("targets", __name__, tag="forecasts")


class TargetQuery(ListQuery):
    territory = fields.String(validate=Length(1, 16), metadata={
        "description": "only targets observed for this territory at a level they are "
                       "forecast at"})
    published = fields.Boolean(metadata={
        "description": "true: only the targets the scheduled refresh forecasts"})


class LevelVerdict(Schema):
    level = fields.String(required=True)
    status = fields.String(required=True)
    relative_wis = fields.Dict(keys=fields.String(), values=fields.Float(), required=True,
                               metadata={"description": "horizon → relative WIS, on the "
                                                        "verdict's period"})
    development = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)
    n_forecasts = fields.Integer(required=True)


class Verdict(Schema):
    status = fields.String(required=True, validate=OneOf(
        ["beats_baseline", "mixed", "does_not_beat_baseline", "not_scored"]))
    period = fields.String(allow_none=True, required=True)
    text_fr = fields.String(required=True)
    levels = fields.List(fields.Nested(LevelVerdict), required=True)


class TargetOut(Schema):
    name = fields.String(required=True, metadata={"description": "/forecasts?target="})
    frequency = fields.String(required=True)
    variable = fields.String(required=True, metadata={"description": "cube indicator"})
    label = fields.String(required=True, metadata={"description": "French name"})
    units = fields.String(required=True)
    units_fr = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "count or rate"})
    derived = fields.Boolean(required=True, metadata={
        "description": "derived from the indicator's metadata (false: built-in target)"})
    published = fields.Boolean(required=True, metadata={
        "description": "forecast at every refresh (else on demand)"})
    levels = fields.List(fields.String(), required=True)
    horizons = fields.List(fields.Integer(), required=True)
    horizon_unit = fields.String(required=True, metadata={"description": "wk, day or qtr"})
    horizons_fr = fields.List(fields.String(), required=True)
    hub_targets = fields.List(fields.String(), required=True)
    first_date = fields.String(allow_none=True, required=True)
    last_date = fields.String(allow_none=True, required=True)
    verdict = fields.Nested(Verdict, required=True)


class TargetList(Schema):
    items = fields.List(fields.Nested(TargetOut), required=True)
    pagination = fields.Nested(PageInfo, required=True)


COLUMNS = [c for c in TargetOut().fields if c not in ("verdict", "levels", "horizons",
                                                      "horizons_fr", "hub_targets")]


@bp.get("")
@bp.input(TargetQuery, location="query")
@bp.output(TargetList)
@bp.doc(summary="Forecastable targets",
        description="Every count or rate of the served cube that /forecasts can serve, with "
                    "its French label, unit, horizons and levels, and whether Vigie beats the "
                    "naive baseline on its track record.")
def get_targets(query_data: dict):
    rows = list_targets(context(), territory=query_data.get("territory"),
                        published=query_data.get("published"))
    return render_page(rows, query_data, columns=COLUMNS, filename="targets")


class OneTargetQuery(Schema):
    frequency = fields.String(validate=OneOf(["daily", "weekly", "quarterly"]), metadata={
        "description": "default: the built-in one, else the finest holding it"})


@bp.get("/<name>")
@bp.input(OneTargetQuery, location="query")
@bp.output(TargetOut)
@bp.doc(summary="One forecastable target")
def get_target(name: str, query_data: dict):
    return render(target_entry(context(), name[:64], query_data.get("frequency")), {})
