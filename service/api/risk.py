"""``/api/v1/risk``: the risk level of each territory and day, with the criteria evaluated and
the inputs that were missing.

The levels, their criteria and thresholds are the domain's (:mod:`features.risk`, thresholds
from :func:`features.risk.load_thresholds`, documented on the methods page): this blueprint
parses the request, calls the use case (:mod:`service.usecases.risk_reads`, which assesses the
served cube as known on ``as_of`` with :func:`features.risk.assess`), and renders one row per
territory and date (JSON, or CSV with one column per input).

* ``GET /api/v1/risk?level=department&date=2020-11-01``: every territory of a level (or the
  listed ``territory`` codes) on one date (default: the latest date on which at least one of
  them has a known level).
* ``GET /api/v1/risk/<code>?start=…&end=…``: one territory over time.
"""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.cache import cached
from service.api.context import context
from service.api.formats import FormatQuery, render
from service.api.paging import PageInfo, PageQuery, paged
from service.usecases.risk_reads import LEVELS, risk_on_day, risk_series

PREFIX = "risk"
bp = APIBlueprint("risk", __name__, tag="risk")


class RiskQuery(FormatQuery, PageQuery):
    level = fields.String(load_default="department", validate=OneOf(list(LEVELS)), metadata={
        "description": "national, region, department or epci (ignored with `territory`)"})
    territory = fields.String(validate=Length(1, 2000), metadata={
        "description": "comma-separated codes (default: every territory of `level`)"})
    date = fields.Date(metadata={"description": "the day assessed (YYYY-MM-DD; default: the "
                                                "latest day with a known level)"})
    as_of = fields.Date(metadata={"description": "assess the data as known on this date"})


class RiskSeriesQuery(FormatQuery, PageQuery):
    start = fields.Date(metadata={"description": "first date (YYYY-MM-DD), inclusive"})
    end = fields.Date(metadata={"description": "last date (YYYY-MM-DD), inclusive"})
    as_of = fields.Date(metadata={"description": "assess the data as known on this date"})


class CriterionOut(Schema):
    name = fields.String(required=True, metadata={"description": "criterion_<level>_<input>"})
    level = fields.Integer(required=True, metadata={"description": "the level it is part of"})
    input = fields.String(required=True)
    label = fields.String(required=True, metadata={"description": "the input, in French"})
    threshold = fields.Float(required=True, metadata={"description": "met when input > it"})
    units = fields.String(required=True)
    value = fields.Float(allow_none=True, required=True,
                         metadata={"description": "the input's value (null: missing)"})
    met = fields.Boolean(allow_none=True, required=True,
                         metadata={"description": "null when the input is missing"})
    estimated = fields.Boolean(required=True, metadata={
        "description": "the value is an estimate (e.g. a département's incidence estimated "
                       "from screened positive tests), not the territory's own"})


class RiskItem(Schema):
    territory = fields.String(required=True)
    name = fields.String(required=True)
    date = fields.String(required=True)
    level = fields.Integer(required=True, metadata={
        "description": "highest level reached: -1 unknown (no criterion evaluable), 0 to 3"})
    level_max = fields.Integer(required=True, metadata={
        "description": "highest level the missing inputs still allow (= level when complete)"})
    complete = fields.Boolean(required=True, metadata={
        "description": "every input needed to decide the level was known"})
    label = fields.String(required=True, metadata={"description": "the level in French"})
    criteria_evaluated = fields.Integer(required=True)
    criteria = fields.List(fields.Nested(CriterionOut), required=True)
    inputs = fields.Dict(keys=fields.String(), values=fields.Float(allow_none=True),
                         required=True, metadata={"description": "input values used (null "
                                                  "for the public where the count behind "
                                                  "them is hidden: docs/DISCLOSURE.md)"})
    inputs_from = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                              metadata={"description": "territory each input was taken from "
                                                       "(a région for regional criteria)"})
    missing = fields.List(fields.String(), required=True,
                          metadata={"description": "inputs with no value on that day"})
    inputs_origin = fields.Dict(
        keys=fields.String(), values=fields.String(allow_none=True), required=True,
        metadata={"description": "origin of each input: observed (the territory's own value), "
                                 "estimated_from_screening (incidence of a territory without "
                                 "daily cases, from its screened positive tests and its "
                                 "région's persons per test), null when missing"})
    estimated = fields.List(fields.String(), required=True,
                            metadata={"description": "inputs whose value is an estimate"})


class RiskOut(Schema):
    thresholds = fields.String(required=True, metadata={"description": "name of the thresholds"})
    source = fields.String(required=True, metadata={"description": "their cited source"})
    levels = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "level → French label"})
    vintage_id = fields.String(required=True)
    as_of = fields.String(allow_none=True, required=True)
    date = fields.String(allow_none=True, required=True, metadata={
        "description": "the day assessed (null for a territory's series)"})
    first_date = fields.String(allow_none=True, required=True,
                               metadata={"description": "first day of the assessed cube"})
    last_date = fields.String(allow_none=True, required=True,
                              metadata={"description": "last day of the assessed cube"})
    suppression_threshold = fields.Integer(allow_none=True, required=True)
    items = fields.List(fields.Nested(RiskItem), required=True)
    pagination = fields.Nested(PageInfo, required=True)


COLUMNS = ["territory", "name", "date", "level", "level_max", "complete", "label",
           "criteria_evaluated", "criteria", "inputs", "inputs_from", "missing", "estimated"]


def _respond(payload: dict, query: dict, filename: str):
    """JSON as is; CSV with the criteria as ``level: input > threshold : oui/non/inconnu`` and
    one column per input (``<input>``, ``<input>_from``), so that French Excel reads numbers."""
    if query.get("format") != "csv":
        return render(payload, query)
    words = {True: "oui", False: "non", None: "inconnu"}
    inputs: list[str] = []
    rows = []
    for item in payload["items"]:
        row = {k: v for k, v in item.items() if k not in ("criteria", "inputs", "inputs_from",
                                                          "missing", "inputs_origin",
                                                          "estimated")}
        row["criteria"] = "; ".join(f"{c['level']}: {c['input']} > {c['threshold']:g} : "
                                    f"{words[c['met']]}" for c in item["criteria"])
        for name, value in item["inputs"].items():
            row[name] = value
            inputs.append(name)
        for name, code in item["inputs_from"].items():
            row[f"{name}_from"] = code
        row["missing"] = ",".join(item["missing"])
        row["estimated"] = ",".join(item["estimated"])
        rows.append(row)
    inputs = list(dict.fromkeys(inputs))
    sources = [n for n in inputs if any(f"{n}_from" in r for r in rows)]
    columns = [*COLUMNS[:COLUMNS.index("criteria") + 1], *inputs,
               *(f"{n}_from" for n in sources), "missing", "estimated"]
    return render({**payload, "items": rows}, query, columns=columns, filename=filename)


# ---------------------------------------------------------------------------- endpoints
@bp.get("")
@bp.input(RiskQuery, location="query")
@bp.output(RiskOut)
@bp.doc(summary="Risk level of territories on one day",
        description="Per territory: level (-1 unknown, 0 Vigilance … 3 Alerte maximale), its "
                    "French label, each criterion (input > threshold: met, not met, unknown), "
                    "the inputs used, their origin (a département's incidence is estimated "
                    "from screened positive tests) and those missing. Thresholds and their "
                    "source: "
                    "features.risk (configurable, VIGIE_RISK_THRESHOLDS).")
@cached
def get_risk(query_data: dict):
    answer = risk_on_day(context(), territory=query_data.get("territory"),
                         level=query_data["level"], day=query_data.get("date"),
                         as_of=query_data.get("as_of"))
    return _respond(paged(answer, query_data), query_data, f"vigie_risk_{answer['date']}")


@bp.get("/<code>")
@bp.input(RiskSeriesQuery, location="query")
@bp.output(RiskOut)
@bp.doc(summary="Risk level of one territory over time",
        description="Every day from `start` to `end` on which at least one criterion could be "
                    "evaluated (days with level -1 are left out).")
@cached
def get_risk_series(code: str, query_data: dict):
    answer = risk_series(context(), code=code, start=query_data.get("start"),
                         end=query_data.get("end"), as_of=query_data.get("as_of"))
    return _respond(paged(answer, query_data), query_data, f"vigie_risk_{code}")
