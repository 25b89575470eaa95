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
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from features.cube import totals_coverage
from service.api.cache import cached, set_last_modified
from service.api.disclosure_view import hidden_cells, is_public
from service.api.formats import clean, render
from service.api.lookups import (
    FREQUENCIES,
    PUBLIC_LEVELS,
    check_readable,
    find_indicator,
    indicator_catalog,
    open_dataset,
    parse_codes,
    territory_table,
)
from service.api.paging import ListQuery, PageInfo, paginate
from service.api.state import state
from service.errors import ApiError, bad_request

PREFIX = "data"
bp = APIBlueprint("data", __name__, tag="data")


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
        "description": "children (départements, reporting collectivités) with a value that date"})
    children = fields.Integer(required=True, metadata={
        "description": "children the total needs"})


class Observation(Schema):
    territory = fields.String(required=True)
    date = fields.String(required=True)
    value = fields.Float(allow_none=True, required=True)
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
    name = query_data["indicator"]
    meta = find_indicator(name, query_data.get("frequency"))
    if meta is None:
        known = find_indicator(name)
        if known is not None:
            raise bad_request(f"{name} has no {query_data['frequency']} series",
                              frequency=known["frequency"])
        raise bad_request(f"unknown indicator {name!r}", known=sorted(indicator_catalog()))
    start, end = query_data.get("start"), query_data.get("end")
    if start and end and start > end:
        raise bad_request("start is after end", start=str(start), end=str(end))
    table = territory_table()
    codes = parse_codes(query_data.get("territory"))
    public = is_public()
    if codes:
        check_readable(codes, table)
    as_of = query_data.get("as_of")
    try:
        ds = open_dataset(meta["frequency"], as_of)
    except LookupError as exc:
        raise ApiError(503, "no_data", str(exc)) from exc
    if as_of is not None:
        set_last_modified(ds.attrs.get("issued_at"))
    var = ds[name]
    available = set(var["territory"].values.tolist())
    if codes is None:
        codes = [c for c in var["territory"].values.tolist()
                 if not public or table.get(c, {}).get("level") in PUBLIC_LEVELS]
    codes = [c for c in codes if c in available]
    var = var.sel(territory=codes)
    dates = pd.DatetimeIndex(var["date"].values)
    keep = np.ones(len(dates), dtype=bool)
    if start:
        keep &= dates >= pd.Timestamp(start)
    if end:
        keep &= dates <= pd.Timestamp(end)
    var = var.isel(date=np.flatnonzero(keep))
    values = var.transpose("territory", "date").values
    date_labels = pd.DatetimeIndex(var["date"].values).strftime("%Y-%m-%d").tolist()
    threshold = state().settings.small_count_threshold
    # docs/DISCLOSURE.md: small counts, the cells that would give them back, derived values.
    mask = hidden_cells(meta["frequency"], name, codes, var["date"].values,
                        str(ds.attrs.get("vintage_id", "")) or None) if public else None
    suppress_counts = mask is not None
    totals = totals_coverage(ds[name]) or {"children": {}, "incomplete": {}}
    computed = {c: int(totals["children"][c]) for c in codes if c in totals["children"]}
    labels = np.array(date_labels, dtype=object)
    rows = []
    for i, code in enumerate(codes):
        series = values[i]
        need = computed.get(code)
        gaps = totals["incomplete"].get(code, {}) if need else {}
        shown = ~np.isnan(series)
        if gaps:
            shown |= np.isin(labels, list(gaps))
        for j in np.flatnonzero(shown):
            if np.isnan(series[j]):
                rows.append({"territory": code, "date": date_labels[j], "value": None,
                             "suppressed": False, "reason": "incomplete",
                             "coverage": {"reporting": int(gaps[date_labels[j]]),
                                          "children": need}})
                continue
            value = float(series[j])
            hidden = bool(suppress_counts and mask[i, j])
            rows.append({"territory": code, "date": date_labels[j],
                         "value": None if hidden else clean(value), "suppressed": hidden,
                         "reason": None,
                         "coverage": {"reporting": need, "children": need} if need else None})
    incomplete = sum(1 for row in rows if row["reason"] == "incomplete")
    items, info = paginate(rows, query_data)
    if query_data.get("format") == "csv":
        for row in items:
            row.update(reporting=(row["coverage"] or {}).get("reporting"),
                       children=(row["coverage"] or {}).get("children"))
    payload = {
        "indicator": name, "frequency": meta["frequency"], "label": meta["label"],
        "units": meta["units"], "units_fr": meta["units_fr"], "count": meta["count"],
        "source": meta["source"], "licence": meta["licence"],
        "vintage_id": str(ds.attrs.get("vintage_id", "")),
        "as_of": str(as_of) if as_of else None,
        "suppression_threshold": threshold if suppress_counts else None,
        "computed_totals": {"territories": computed, "incomplete": incomplete},
        "items": items, "pagination": info,
    }
    return render(payload, query_data, columns=["territory", "date", "value", "suppressed",
                                                "reason", "reporting", "children"],
                  filename=f"vigie_{name}")
