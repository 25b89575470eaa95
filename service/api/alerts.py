"""``/api/v1/alerts``: per territory, the probability that ICU occupancy exceeds capacity
within 7 and 14 days, and an alert level.

The rule (capacity, probability of exceeding it from the forecast's quantiles, level, message)
is :mod:`models.alerts`; its inputs (the latest daily ``icu`` forecast, or the newest public
``status_quo`` scenario run) are found by :func:`service.usecases.alerts.capacity_alerts`.
This blueprint parses the request, calls it, and renders one row per territory (JSON or CSV).
"""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.cache import cached
from service.api.context import context
from service.api.formats import FormatQuery, render
from service.api.paging import PageInfo, PageQuery, paged
from service.usecases.alerts import capacity_alerts

PREFIX = "alerts"
bp = APIBlueprint("alerts", __name__, tag="alerts")


class AlertQuery(FormatQuery, PageQuery):
    level = fields.String(load_default="department",
                          validate=OneOf(["national", "region", "department"]))
    territory = fields.String(validate=Length(1, 2000), metadata={
        "description": "comma-separated codes (default: every territory of `level`)"})
    source = fields.String(load_default="forecast", validate=OneOf(["forecast", "scenario"]),
                           metadata={"description": "forecast: the daily icu forecast; "
                                     "scenario: the newest public status_quo run (the library "
                                     "file unmodified, run by the service, or a run an admin "
                                     "published), the same for every caller"})
    model = fields.String(validate=Length(1, 64), metadata={
        "description": "model of the icu forecast (default: ensemble, else the newest run)"})


class AlertItem(Schema):
    territory = fields.String(required=True)
    name = fields.String(required=True)
    capacity = fields.Float(allow_none=True, required=True,
                            metadata={"description": "adult ICU beds (DREES)"})
    capacity_date = fields.String(allow_none=True, required=True)
    median_7d = fields.Float(allow_none=True, required=True)
    median_14d = fields.Float(allow_none=True, required=True)
    p_exceed_7d = fields.Float(allow_none=True, required=True)
    p_exceed_14d = fields.Float(allow_none=True, required=True)
    level = fields.String(required=True, metadata={
        "description": "red, orange, yellow, green or unknown"})
    message = fields.String(required=True, metadata={"description": "in plain French"})


class AlertOut(Schema):
    source = fields.String(required=True)
    method = fields.String(required=True)
    run_id = fields.String(allow_none=True, required=True)
    vintage_id = fields.String(allow_none=True, required=True)
    forecast_date = fields.String(allow_none=True, required=True)
    items = fields.List(fields.Nested(AlertItem), required=True)
    pagination = fields.Nested(PageInfo, required=True)


@bp.get("")
@bp.input(AlertQuery, location="query")
@bp.output(AlertOut)
@bp.doc(summary="Capacity alerts: P(ICU occupancy > beds) within 7 and 14 days")
@cached
def get_alerts(query_data: dict):
    answer = capacity_alerts(context(), source=query_data["source"], level=query_data["level"],
                             territory=query_data.get("territory"),
                             model=query_data.get("model"))
    return render(paged(answer, query_data), query_data, columns=list(AlertItem().fields),
                  filename="vigie_alerts")
