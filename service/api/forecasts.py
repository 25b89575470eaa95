"""``/api/v1/forecasts``: quantile forecasts from the forecast store (latest run or by run id).

A run is immutable and the store switches its "latest" pointers atomically, so an answer comes
from exactly one run (named in the body and in ``X-Vigie-Run``) with the cube vintage and model
version behind it. Formats: JSON (one item per location × target, with its quantiles), flat CSV
(``format=csv``, ``sep=;`` for French Excel) or the Forecast Hub CSV (``format=hub``).
"""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf, Range, Regexp

from service.api.common import (
    PageInfo,
    PageQuery,
    _memo,
    cached,
    clean,
    csv_response,
    find_indicator,
    hidden_cells,
    is_public,
    paginate,
    render,
    set_last_modified,
    state,
    territory_table,
)
from service.api.data import parse_codes
from service.audit import note
from service.errors import ApiError, bad_request, not_found

PREFIX = "forecasts"
bp = APIBlueprint("forecasts", __name__, tag="forecasts")

LEVEL_OF = {"country": "national", "region": "region", "department": "department"}
RUN_ID = r"^[0-9A-Za-z][0-9A-Za-z_.-]*$"  # a store folder name: never a path
HUB_COLUMNS = ["forecast_date", "target", "target_end_date", "location", "type", "quantile",
               "value"]


class ForecastQuery(PageQuery):
    target = fields.String(load_default="inc_hosp", validate=Length(1, 32), metadata={
        "description": "inc_hosp, inc_icu, hosp, icu, er_visits, unemployment"})
    frequency = fields.String(validate=OneOf(["daily", "weekly", "quarterly"]), metadata={
        "description": "default: the target's usual frequency"})
    level = fields.String(validate=OneOf(["national", "region", "department"]), metadata={
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
    target = fields.String(validate=Length(1, 32))
    level = fields.String(validate=OneOf(["national", "region", "department"]))
    model = fields.String(validate=Length(1, 64))


class ForecastRunList(Schema):
    items = fields.List(fields.Nested(ForecastRun), required=True)
    pagination = fields.Nested(PageInfo, required=True)


def forecast_store():
    from models.store import ForecastStore

    return ForecastStore.from_settings(state().settings)


def run_meta(metadata: dict) -> dict:
    return {
        "run_id": str(metadata.get("run_id", "")),
        "created_at": str(metadata.get("created_at", "")),
        "target": str(metadata.get("target", "")),
        "frequency": str(metadata.get("frequency", "")),
        "level": str(metadata.get("level", "")),
        "model": str(metadata.get("model", "")),
        "model_version": str(metadata.get("model_version", "")),
        "vintage_id": str(metadata.get("vintage_id", "")),
        "as_of": clean(metadata.get("as_of")),
        "rows": clean(metadata.get("rows")),
    }


def run_items(run) -> dict:
    """A run's Hub rows grouped per location × target (memoised: runs are immutable)."""

    def build() -> dict:
        frame = run.read()
        frame = frame[frame["type"] == "quantile"]
        items = []
        for (location, target, end), rows in frame.groupby(
                ["location", "target", "target_end_date"], sort=True):
            rows = rows.sort_values("quantile")
            quantiles = [{"quantile": round(float(q), 4), "value": clean(float(v))}
                         for q, v in zip(rows["quantile"], rows["value"], strict=True)]
            median = next((q["value"] for q in quantiles if abs(q["quantile"] - 0.5) < 1e-9),
                          None)
            items.append({"location": str(location), "target": str(target),
                          "horizon": int(str(target).split(" ", 1)[0]),
                          "target_end_date": str(end), "median": median,
                          "quantiles": quantiles})
        forecast_date = str(frame["forecast_date"].iloc[0]) if len(frame) else None
        return {"items": items, "forecast_date": forecast_date, "hub": frame}

    return _memo(("forecast_run", run.run_id), build)


def find_run(target: str, frequency: str | None, level: str, model: str | None,
             run_id: str | None = None):
    """The requested run (by id, else the latest of its kind); 404 when there is none."""
    import re

    from models.targets import get_target

    store = forecast_store()
    if run_id and (len(run_id) > 64 or not re.match(RUN_ID, run_id)):
        # A store folder name is at most 64 characters (longer: the OS refuses the path).
        raise not_found(f"no forecast run {run_id[:64]!r}")
    if run_id:
        try:
            return store.get(run_id)
        except KeyError as exc:
            raise not_found(f"no forecast run {run_id!r}") from exc
    try:
        tgt = get_target(target, frequency)
    except KeyError as exc:
        raise bad_request(str(exc).strip("'\"")) from exc
    run = store.latest(tgt.name, level, model or "ensemble", tgt.frequency)
    if run is None and model is None:
        # No ensemble yet (e.g. only the fast baseline ran): serve the newest run of any model.
        pattern = f"{tgt.name}_{tgt.frequency}_{level}_*.json"
        pointers = sorted((store.root / "latest").glob(pattern),
                          key=lambda p: p.stat().st_mtime_ns, reverse=True)
        if pointers:
            run = store.latest(tgt.name, level, pointers[0].stem[len(pattern) - 6:],
                               tgt.frequency)
    if run is None:
        raise ApiError(404, "no_forecast", f"no {model or 'ensemble'} forecast of {tgt.name} "
                       f"({tgt.frequency}) at level {level} yet",
                       {"target": tgt.name, "frequency": tgt.frequency, "level": level,
                        "model": model})
    return run


def _level(query: dict, codes: list[str] | None) -> str:
    if query.get("level"):
        return query["level"]
    if not codes:
        return "national"
    table = territory_table()
    unknown = [c for c in codes if c not in table]
    if unknown:
        raise bad_request("unknown territory code(s)", unknown=unknown)
    levels = {LEVEL_OF.get(table[c]["level"]) for c in codes}
    if None in levels:
        raise bad_request("forecasts exist for France, régions and départements only",
                          territories=codes)
    if len(levels) > 1:
        raise bad_request("give territories of one level (or set level)", territories=codes)
    return levels.pop()


@bp.get("")
@bp.input(ForecastQuery, location="query")
@bp.output(ForecastOut)
@bp.doc(summary="Quantile forecasts",
        description="Latest run of target × level × model, or `run_id`; filter by territory "
                    "and horizon. `format=hub` gives the Forecast Hub CSV.")
@cached
def get_forecasts(query_data: dict):
    codes = parse_codes(query_data.get("territory"))
    level = _level(query_data, codes)
    run = find_run(query_data["target"], query_data.get("frequency"), level,
                   query_data.get("model"), query_data.get("run_id"))
    meta = run_meta(run.metadata)
    # The forecast's own vintage and model, not the current cube's (looked up for names).
    note(pin=True, vintage_id=meta["vintage_id"], run_id=meta["run_id"],
         model_version=f"{meta['model']}@{meta['model_version']}")
    set_last_modified(meta["created_at"] or None)
    grouped = run_items(run)
    items = grouped["items"]
    if codes:
        wanted = set(codes)
        items = [i for i in items if i["location"] in wanted]
    if query_data.get("horizon"):
        items = [i for i in items if i["horizon"] == query_data["horizon"]]
    names = territory_table()
    threshold = state().settings.small_count_threshold
    out, suppress_counts = public_items(items, meta)
    if query_data["format"] == "hub":
        return _hub_csv(grouped["hub"], out, meta)
    out = [{**item, "location_name": names.get(item["location"], {}).get("name", "")}
           for item in out]
    if query_data["format"] == "csv":
        flat = [{"location": i["location"], "location_name": i["location_name"],
                 "target": i["target"], "horizon": i["horizon"],
                 "target_end_date": i["target_end_date"], "quantile": q["quantile"],
                 "value": q["value"], "suppressed": i["suppressed"]}
                for i in out for q in i["quantiles"]]
        return csv_response(flat, list(flat[0]) if flat else ["location", "target", "value"],
                            f"vigie_forecast_{meta['run_id']}", query_data.get("sep"),
                            query_data.get("decimal"))
    page, info = paginate(out, query_data)
    return render({"run": meta, "forecast_date": grouped["forecast_date"],
                   "suppression_threshold": threshold if suppress_counts else None,
                   "items": page, "pagination": info}, query_data)


def public_items(items: list[dict], meta: dict) -> tuple[list[dict], bool]:
    """Forecast items as the caller may see them, and whether suppression applies.

    For the public and a count target (docs/DISCLOSURE.md, "Forecasts"): every value of an
    item is hidden when the observation of the same territory and date is hidden (a forecast
    is never more precise than the observation) or its median is in (0, threshold); otherwise
    each quantile value in (0, threshold) is hidden (``suppressed: true`` on the item)."""
    import pandas as pd

    from features.disclosure import forecast_public, is_protected
    from models.targets import get_target

    plain = [{**i, "suppressed": False} for i in items]
    if not is_public():
        return plain, False
    try:
        target = get_target(meta["target"], meta["frequency"] or None)
    except KeyError:
        return plain, False
    entry = find_indicator(target.variable, target.frequency)
    if entry is None or not is_protected(target.variable, {"count": int(entry["count"])}):
        return plain, False
    threshold = state().settings.small_count_threshold
    locations = sorted({i["location"] for i in items})
    ends = sorted({i["target_end_date"] for i in items})
    mask = hidden_cells(target.frequency, target.variable, locations, pd.to_datetime(ends))
    row = {c: k for k, c in enumerate(locations)}
    col = {d: k for k, d in enumerate(ends)}
    out = []
    for item in items:
        observed = bool(mask is not None and mask[row[item["location"]],
                                                  col[item["target_end_date"]]])
        values, hidden = forecast_public([q["value"] for q in item["quantiles"]],
                                         item["median"], observed, threshold, True)
        quantiles = [{"quantile": q["quantile"], "value": v}
                     for q, v in zip(item["quantiles"], values, strict=True)]
        median = next((q["value"] for q in quantiles if abs(q["quantile"] - 0.5) < 1e-9),
                      None if hidden else item["median"])
        out.append({**item, "median": median, "quantiles": quantiles, "suppressed": hidden})
    return out, True


def _hub_csv(frame, items: list[dict], meta: dict):
    """The Forecast Hub CSV of the selected forecasts (``items`` as :func:`public_items` gives
    them: hidden values left empty)."""
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
    metas = [run_meta(r.metadata) for r in forecast_store().list_runs()]
    for key in ("target", "level", "model"):
        if query_data.get(key):
            metas = [m for m in metas if m[key] == query_data[key]]
    items, info = paginate(metas, query_data)
    return render({"items": items, "pagination": info}, query_data)


@bp.get("/runs/<run_id>")
@bp.output(ForecastRun)
@bp.doc(summary="One forecast run's metadata")
@cached
def get_forecast_run(run_id: str):
    run = find_run("", None, "", "", run_id)
    meta = run_meta(run.metadata)
    # The forecast's own vintage and model, not the current cube's (looked up for names).
    note(pin=True, vintage_id=meta["vintage_id"], run_id=meta["run_id"],
         model_version=f"{meta['model']}@{meta['model_version']}")
    return render(meta, {})
