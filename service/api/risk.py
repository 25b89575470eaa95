"""``/api/v1/risk``: the risk level of each territory and day, with the criteria evaluated and
the inputs that were missing.

The levels, their criteria and thresholds are the domain's (:mod:`features.risk`, thresholds
from :func:`features.risk.load_thresholds`, documented on the methods page): this blueprint
parses the request, calls :func:`features.risk.assess` on the served cube (as known on
``as_of``), and renders one row per territory and date.

* ``GET /api/v1/risk?level=department&date=2020-11-01``: every territory of a level (or the
  listed ``territory`` codes) on one date (default: the latest date on which at least one of
  them has a known level).
* ``GET /api/v1/risk/<code>?start=…&end=…``: one territory over time.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.cache import cached, set_last_modified
from service.api.disclosure_view import hidden_cells, is_public
from service.api.formats import FormatQuery, clean, render
from service.api.lookups import (
    check_readable,
    memo,
    open_dataset,
    parse_codes,
    territory_table,
)
from service.api.paging import PageInfo, PageQuery, paginate
from service.api.state import state
from service.errors import ApiError, bad_request, not_found

PREFIX = "risk"
bp = APIBlueprint("risk", __name__, tag="risk")

#: API level names → territory levels of the cube.
LEVELS = {"national": "country", "region": "region", "department": "department", "epci": "epci"}


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


# ---------------------------------------------------------------------------- the domain call
def assessment(as_of: dt.date | None):
    """``features.risk.assess`` of the served cube (as known on ``as_of``), once per vintage."""
    from features import risk

    try:
        daily = open_dataset("daily", as_of)
    except LookupError as exc:
        raise ApiError(503, "no_data", str(exc)) from exc
    try:
        yearly = open_dataset("yearly", as_of)
    except KeyError:
        yearly = None
    settings = state().settings
    thresholds = risk.load_thresholds(settings)
    vintage = str(daily.attrs.get("vintage_id", ""))
    if as_of is not None:
        set_last_modified(daily.attrs.get("issued_at"))
    # The thresholds in force are part of the key: a changed file is a new assessment.
    key = ("risk", vintage, str(as_of), thresholds.path, thresholds.name, thresholds.criteria,
           tuple((k, i.scope) for k, i in thresholds.inputs.items()))
    assessed = memo(key, lambda: risk.assess(daily, yearly, thresholds))
    return assessed, thresholds, vintage, _hidden_inputs(assessed, vintage)


def _hidden_inputs(ds, vintage: str) -> dict[str, np.ndarray]:
    """Per input of the assessment ``ds``, its (territory, date) values hidden from the
    public: hidden where the cube cell it was taken from is (the région's for a regional
    input, the estimate's where estimated; ICU occupancy = ICU patients / beds is hidden with
    the patients), docs/DISCLOSURE.md. Empty for an authenticated caller."""
    from features import risk

    if not is_public():
        return {}
    codes = ds["territory"].values.tolist()
    dates = ds["date"].values
    inputs = [n for n in ds.data_vars if f"{n}_from" in ds.data_vars]
    out = {}
    for name in [*inputs, "icu"]:
        if name not in ds.data_vars:
            continue
        source = "icu" if name in ("icu", risk.ICU_OCCUPANCY) else name
        taken = f"{name}_from" if f"{name}_from" in ds.data_vars else \
            f"{risk.ICU_OCCUPANCY}_from"
        where = ds[taken].values.tolist() if taken in ds.data_vars else codes
        mask = hidden_cells("daily", source, where, dates, vintage or None)
        estimate = risk.ESTIMATES.get(name)
        if estimate and f"{name}_origin" in ds.data_vars:
            guess = hidden_cells("daily", estimate, where, dates, vintage or None)
            if guess is not None:
                origin = ds[f"{name}_origin"].transpose("territory", "date").values
                mask = np.where(origin == risk.ORIGIN_ESTIMATED, guess,
                                mask if mask is not None else False)
        if mask is not None:
            out[name] = mask
    return out


def _rows(ds, thresholds, codes: list[str], date_idx: list[int] | None,
          hidden: dict[str, np.ndarray], public: bool, keep_unknown: bool) -> list[dict]:
    """One row per (territory, date) of the assessment ``ds`` (``keep_unknown``: also the
    days with no evaluable criterion); inputs whose cube cell is hidden from the public
    (``hidden``, :func:`_hidden_inputs`) are null."""
    from features import risk

    table = territory_table()
    index = {c: i for i, c in enumerate(ds["territory"].values.tolist())}
    dates = pd.DatetimeIndex(ds["date"].values).strftime("%Y-%m-%d")
    criteria = [n for n in ds.data_vars if str(n).startswith("criterion_")]
    inputs = [n for n in ds.data_vars if f"{n}_from" in ds.data_vars]
    extra = [n for n in ("icu", "icu_beds_adult") if n in ds.data_vars and n not in inputs]
    level = ds["risk_level"].transpose("territory", "date").values
    level_max = ds["risk_level_max"].transpose("territory", "date").values
    complete = ds["risk_complete"].transpose("territory", "date").values
    evaluated = ds["criteria_evaluated"].transpose("territory", "date").values
    missing = ds["inputs_missing"].transpose("territory", "date").values
    arrays = {n: ds[n].transpose("territory", "date").values for n in (*criteria, *inputs, *extra)}
    origins = {n: ds[f"{n}_origin"].transpose("territory", "date").values for n in inputs
               if f"{n}_origin" in ds.data_vars}
    rows = []
    for code in codes:
        i = index[code]
        origin = {n: str(ds[f"{n}_from"].values[i]) for n in inputs}
        for j in (date_idx if date_idx is not None else range(len(dates))):
            lv = int(level[i, j])
            if lv < 0 and not keep_unknown:
                continue
            values = {n: clean(float(arrays[n][i, j])) for n in (*inputs, *extra)}
            origin_of = {n: risk.ORIGIN_NAMES.get(int(o[i, j])) for n, o in origins.items()}
            estimated = [n for n, o in origins.items() if o[i, j] == risk.ORIGIN_ESTIMATED]
            for n, mask in hidden.items():  # public answers only (docs/DISCLOSURE.md)
                if n in values and mask[i, j]:
                    values[n] = None
            rows.append({
                "territory": code, "name": table.get(code, {}).get("name", code),
                "date": dates[j], "level": lv, "level_max": int(level_max[i, j]),
                "complete": bool(complete[i, j]),
                "label": risk.label(lv, int(level_max[i, j])),
                "criteria_evaluated": int(evaluated[i, j]),
                "criteria": [_criterion(ds[n], arrays[n][i, j], values, thresholds, estimated)
                             for n in criteria],
                "inputs": values, "inputs_from": origin,
                "missing": [m for m in str(missing[i, j]).split(",") if m],
                "inputs_origin": origin_of, "estimated": estimated,
            })
    return rows


def _criterion(var, state_value: float, values: dict, thresholds, estimated: list[str]
               ) -> dict:
    name = str(var.attrs["input"])
    met = None if np.isnan(state_value) else bool(state_value)
    spec = thresholds.inputs.get(name)
    return {"name": str(var.name), "level": int(var.attrs["level"]), "input": name,
            "label": spec.label if spec else name,
            "threshold": float(var.attrs["threshold"]), "units": str(var.attrs.get("units", "")),
            "value": values.get(name), "met": met, "estimated": name in estimated}


def _payload(ds, thresholds, vintage: str, as_of, day: str | None, rows: list[dict],
             query: dict) -> dict:
    from features import risk

    items, info = paginate(rows, query)
    public = is_public()
    dates = pd.DatetimeIndex(ds["date"].values)
    return {"thresholds": thresholds.name, "source": thresholds.citation,
            "levels": {str(k): v for k, v in risk.LEVEL_LABELS.items()},
            "vintage_id": vintage, "as_of": str(as_of) if as_of else None, "date": day,
            "first_date": str(dates[0].date()) if len(dates) else None,
            "last_date": str(dates[-1].date()) if len(dates) else None,
            "suppression_threshold": state().settings.small_count_threshold if public else None,
            "items": items, "pagination": info}


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
    table = territory_table()
    codes = parse_codes(query_data.get("territory"))
    if codes:
        check_readable(codes, table)
    as_of = query_data.get("as_of")
    ds, thresholds, vintage, hidden = assessment(as_of)
    position = {c: i for i, c in enumerate(ds["territory"].values.tolist())}
    if codes:
        codes = [c for c in codes if c in position]
    else:
        level = LEVELS[query_data["level"]]
        codes = [c for c in position if table.get(c, {}).get("level") == level]
    dates = pd.DatetimeIndex(ds["date"].values)
    day = query_data.get("date")
    if day is not None:
        j = dates.get_indexer([pd.Timestamp(day)])[0]
        if j < 0:
            raise bad_request("no assessment on that date: give a date of the cube",
                              date=str(day), first=str(dates[0].date()) if len(dates) else None,
                              last=str(dates[-1].date()) if len(dates) else None)
    else:
        rows = [position[c] for c in codes]
        known = (ds["risk_level"].transpose("territory", "date").values[rows] >= 0).any(axis=0) \
            if rows else np.zeros(len(dates), dtype=bool)
        j = int(np.flatnonzero(known)[-1]) if known.any() else len(dates) - 1
    label = str(dates[j].date()) if len(dates) else None
    rows = _rows(ds, thresholds, codes, [j] if len(dates) else [], hidden, is_public(),
                 keep_unknown=True)
    payload = _payload(ds, thresholds, vintage, as_of, label, rows, query_data)
    return _respond(payload, query_data, f"vigie_risk_{label}")


@bp.get("/<code>")
@bp.input(RiskSeriesQuery, location="query")
@bp.output(RiskOut)
@bp.doc(summary="Risk level of one territory over time",
        description="Every day from `start` to `end` on which at least one criterion could be "
                    "evaluated (days with level -1 are left out).")
@cached
def get_risk_series(code: str, query_data: dict):
    table = territory_table()
    if code not in table:
        raise not_found(f"no territory with code {code!r}", code=code)
    check_readable([code], table)
    start, end = query_data.get("start"), query_data.get("end")
    if start and end and start > end:
        raise bad_request("start is after end", start=str(start), end=str(end))
    as_of = query_data.get("as_of")
    ds, thresholds, vintage, hidden = assessment(as_of)
    dates = pd.DatetimeIndex(ds["date"].values)
    keep = np.ones(len(dates), dtype=bool)
    if start:
        keep &= dates >= pd.Timestamp(start)
    if end:
        keep &= dates <= pd.Timestamp(end)
    codes = [code] if code in set(ds["territory"].values.tolist()) else []
    rows = _rows(ds, thresholds, codes, np.flatnonzero(keep).tolist(), hidden, is_public(),
                 keep_unknown=False)
    payload = _payload(ds, thresholds, vintage, as_of, None, rows, query_data)
    return _respond(payload, query_data, f"vigie_risk_{code}")
