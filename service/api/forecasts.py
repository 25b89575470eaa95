"""``/api/v1/forecasts``: quantile forecasts from the forecast store (latest run or by run id).

A run is immutable and the store switches its "latest" pointers atomically, so an answer comes
from exactly one run (named in the body and in ``X-Vigie-Run``) with the cube vintage and model
version behind it. Formats: JSON (one item per location × target, with its quantiles), flat CSV
(``format=csv``, ``sep=;`` for French Excel) or the Forecast Hub CSV (``format=hub``).
"""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf, Range, Regexp

from service.api.cache import cached
from service.api.context import context
from service.api.formats import csv_response, render
from service.api.paging import PageInfo, PageQuery, paged, render_page
from service.usecases.forecast_reads import RUN_ID, forecast, forecast_run, forecast_runs
from service.usecases.reads import parse_codes

PREFIX = "forecasts"
bp = APIBlueprint("forecasts", __name__, tag="forecasts")

FORECAST_LEVELS = ["national", "region", "department", "epci", "commune"]
HUB_COLUMNS = ["forecast_date", "target", "target_end_date", "location", "type", "quantile",
               "value"]


class ForecastQuery(PageQuery):
    target = fields.String(load_default="inc_hosp", validate=Length(1, 64), metadata={
        "description": "inc_hosp, inc_icu, hosp, icu, er_visits, unemployment, or any count "
                       "or rate indicator of the cube (listed by /api/v1/targets)"})
    frequency = fields.String(validate=OneOf(["daily", "weekly", "quarterly"]), metadata={
        "description": "default: the target's usual frequency"})
    level = fields.String(validate=OneOf(FORECAST_LEVELS), metadata={
        "description": "default: the level of `territory`, else national"})
    model = fields.String(validate=Length(1, 64), metadata={
        "description": "registry name (default: ensemble, else the newest run of any model)"})
    territory = fields.String(validate=Length(1, 2000),
                              metadata={"description": "comma-separated codes"})
    horizon = fields.Integer(validate=Range(1, 60), metadata={
        "description": "keep only this horizon (weeks, days or quarters ahead)"})
    run_id = fields.String(validate=[Length(1, 64), Regexp(RUN_ID)], metadata={
        "description": "a stored run (default: the latest of target × level × model)"})
    format = fields.String(load_default="json", validate=OneOf(["json", "csv", "hub"]))
    sep = fields.String(load_default=None, validate=OneOf([",", ";"]))
    decimal = fields.String(load_default=None, validate=OneOf([".", ","]))


class QuantileValue(Schema):
    quantile = fields.Float(required=True)
    value = fields.Float(allow_none=True, required=True)


class ForecastItem(Schema):
    location = fields.String(required=True)
    location_name = fields.String(required=True)
    target = fields.String(required=True, metadata={"description": "Hub target label"})
    horizon = fields.Integer(required=True)
    target_end_date = fields.String(required=True)
    median = fields.Float(allow_none=True, required=True)
    quantiles = fields.List(fields.Nested(QuantileValue), required=True)
    suppressed = fields.Boolean(required=True)


class ForecastRun(Schema):
    run_id = fields.String(required=True)
    created_at = fields.String(required=True)
    target = fields.String(required=True)
    frequency = fields.String(required=True)
    level = fields.String(required=True)
    model = fields.String(required=True)
    model_version = fields.String(required=True)
    vintage_id = fields.String(required=True)
    as_of = fields.String(allow_none=True, required=True)
    rows = fields.Integer(allow_none=True)


class ForecastOut(Schema):
    run = fields.Nested(ForecastRun, required=True)
    forecast_date = fields.String(allow_none=True, required=True)
    suppression_threshold = fields.Integer(allow_none=True, required=True)
    items = fields.List(fields.Nested(ForecastItem), required=True)
    pagination = fields.Nested(PageInfo, required=True)


class ForecastRunsQuery(PageQuery):
    target = fields.String(validate=Length(1, 64))
    level = fields.String(validate=OneOf(FORECAST_LEVELS))
    model = fields.String(validate=Length(1, 64))


class ForecastRunList(Schema):
    items = fields.List(fields.Nested(ForecastRun), required=True)
    pagination = fields.Nested(PageInfo, required=True)


@bp.get("")
@bp.input(ForecastQuery, location="query")
@bp.output(ForecastOut)
@bp.doc(summary="Quantile forecasts",
        description="Latest run of target × level × model, or `run_id`; filter by territory "
                    "and horizon. `format=hub` gives the Forecast Hub CSV.")
@cached
def get_forecasts(query_data: dict):
    answer = forecast(context(), target=query_data["target"],
                      frequency=query_data.get("frequency"), level=query_data.get("level"),
                      model=query_data.get("model"), run_id=query_data.get("run_id"),
                      codes=parse_codes(query_data.get("territory")),
                      horizon=query_data.get("horizon"))
    meta, items = answer["meta"], answer["items"]
    if query_data["format"] == "hub":
        return _hub_csv(answer["hub"], items, meta)
    if query_data["format"] == "csv":
        flat = [{"location": i["location"], "location_name": i["location_name"],
                 "target": i["target"], "horizon": i["horizon"],
                 "target_end_date": i["target_end_date"], "quantile": q["quantile"],
                 "value": q["value"], "suppressed": i["suppressed"]}
                for i in items for q in i["quantiles"]]
        return csv_response(flat, list(flat[0]) if flat else ["location", "target", "value"],
                            f"vigie_forecast_{meta['run_id']}", query_data.get("sep"),
                            query_data.get("decimal"))
    return render(paged({"run": meta, "forecast_date": answer["forecast_date"],
                         "suppression_threshold": answer["suppression_threshold"],
                         "rows": items}, query_data), query_data)


def _hub_csv(frame, items: list[dict], meta: dict):
    """The Forecast Hub CSV of the selected forecasts (``items`` as the caller may see them:
    hidden values left empty)."""
    shown = {(i["location"], i["target"], q["quantile"]): q["value"]
             for i in items for q in i["quantiles"]}
    rows = []
    for rec in frame[HUB_COLUMNS].to_dict("records"):
        key = (str(rec["location"]), rec["target"], round(float(rec["quantile"]), 4))
        if key in shown:
            rows.append({**rec, "value": shown[key]})
    # Hub file naming: <forecast date>-<team>-<model>.csv
    return csv_response(rows, HUB_COLUMNS, f"{meta['as_of'] or 'forecast'}-vigie-{meta['model']}")


@bp.get("/runs")
@bp.input(ForecastRunsQuery, location="query")
@bp.output(ForecastRunList)
@bp.doc(summary="Stored forecast runs, newest first")
@cached
def list_forecast_runs(query_data: dict):
    metas = forecast_runs(context(), query_data.get("target"), query_data.get("level"),
                          query_data.get("model"))
    return render_page(metas, query_data)


@bp.get("/runs/<run_id>")
@bp.output(ForecastRun)
@bp.doc(summary="One forecast run's metadata")
@cached
def get_forecast_run(run_id: str):
    return render(forecast_run(context(), run_id), {})
