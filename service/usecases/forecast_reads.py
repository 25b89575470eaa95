"""Reading published forecasts, for ``/api/v1/forecasts`` and the ICU alerts.

A read use case (:mod:`service.usecases.reads`): it reads the stores and the served cube
vintage through the :class:`~service.usecases.reads.ReadContext` it is given (memoised per run),
hides from the public what docs/DISCLOSURE.md says, and notes the answer's provenance (the
forecast's own vintage and model version). The blueprint parses the request and renders what
these return.

A run is immutable and the store switches its "latest" pointers atomically, so an answer comes
from exactly one run, with the cube vintage and model version behind it.
"""

from __future__ import annotations

import re

from features.storage.jsonsafe import scalar as clean
from service.errors import ApiError, bad_request, not_found
from service.usecases.reads import ReadContext, aggregated_only

#: Territory levels of the cube → forecast levels.
LEVEL_OF = {"country": "national", "region": "region", "department": "department",
            "epci": "epci", "commune": "commune"}
#: Forecast levels the public may read (as /data: aggregates only, no commune).
PUBLIC_FORECAST_LEVELS = ("national", "region", "department", "epci")
RUN_ID = r"^[0-9A-Za-z][0-9A-Za-z_.-]*$"  # a store folder name: never a path


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


def pin_provenance(ctx: ReadContext, meta: dict) -> None:
    """The answer's provenance is the forecast's own (its vintage and model version), not the
    cube served now (looked up afterwards for names)."""
    ctx.note(pin=True, vintage_id=meta["vintage_id"], run_id=meta["run_id"],
         model_version=f"{meta['model']}@{meta['model_version']}")


def run_items(ctx: ReadContext, run) -> dict:
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

    return ctx.memo(("forecast_run", run.run_id), build)


def _latest_of_any_model(store, target, level: str):
    """The newest run of any model of ``target`` at ``level`` (no ensemble yet, e.g. only the
    fast baseline ran), or None."""
    return store.latest_of_any_model(target.name, level, target.frequency)


def read_target(ctx: ReadContext, name: str, frequency: str | None = None):
    """The target ``name``: built-in, or derived from the served cube's indicator metadata
    (:func:`models.targets.resolve_target`); KeyError saying why when there is none."""
    from models.targets import resolve_target

    return resolve_target(name, frequency, ctx.open_dataset)


def find_run(ctx: ReadContext, target: str, frequency: str | None, level: str,
             model: str | None, run_id: str | None = None):
    """The requested run (by id, else the latest of its kind); 404 when there is none."""
    store = ctx.forecast_store()
    if run_id and (len(run_id) > 64 or not re.match(RUN_ID, run_id)):
        # A store folder name is at most 64 characters (longer: the OS refuses the path).
        raise not_found(f"no forecast run {run_id[:64]!r}")
    if run_id:
        try:
            return store.get(run_id)
        except KeyError as exc:
            raise not_found(f"no forecast run {run_id!r}") from exc
    try:
        tgt = read_target(ctx, target, frequency)
    except KeyError as exc:
        raise bad_request(str(exc.args[0] if exc.args else exc)) from exc
    run = store.latest(tgt.name, level, model or "ensemble", tgt.frequency)
    if run is None and model is None:
        run = _latest_of_any_model(store, tgt, level)
    if run is None:
        raise ApiError(404, "no_forecast", f"no {model or 'ensemble'} forecast of {tgt.name} "
                       f"({tgt.frequency}) at level {level} yet",
                       {"target": tgt.name, "frequency": tgt.frequency, "level": level,
                        "model": model})
    return run


def forecast_level(ctx: ReadContext, level: str | None, codes: list[str] | None) -> str:
    """The forecast level asked for: ``level``, else the one of ``codes`` (one level of France,
    régions or départements), else national."""
    if level:
        return level
    if not codes:
        return "national"
    table = ctx.territory_table()
    unknown = [c for c in codes if c not in table]
    if unknown:
        raise bad_request("unknown territory code(s)", unknown=unknown)
    levels = {LEVEL_OF.get(table[c]["level"]) for c in codes}
    if None in levels:
        raise bad_request("forecasts exist for France, régions, départements, EPCI and "
                          "communes only", territories=codes)
    if len(levels) > 1:
        raise bad_request("give territories of one level (or set level)", territories=codes)
    return levels.pop()


def _protected_target(ctx: ReadContext, meta: dict):
    """The run's target when its variable is a count disclosure control protects, else None."""
    from features.disclosure import is_protected

    try:
        target = read_target(ctx, meta["target"], meta["frequency"] or None)
    except KeyError:
        return None
    entry = ctx.find_indicator(target.variable, target.frequency)
    if entry is None or not is_protected(target.variable, {"count": int(entry["count"])}):
        return None
    return target


def public_items(ctx: ReadContext, items: list[dict], meta: dict) -> tuple[list[dict], bool]:
    """Forecast items as the caller may see them, and whether suppression applies.

    For the public and a count target (docs/DISCLOSURE.md, "Forecasts"): every value of an
    item is hidden when the observation of the same territory and date is hidden (a forecast
    is never more precise than the observation) or its median is in (0, threshold); otherwise
    each quantile value in (0, threshold) is hidden (``suppressed: true`` on the item)."""
    import pandas as pd

    from features.disclosure import forecast_public

    plain = [{**i, "suppressed": False} for i in items]
    if not ctx.is_public():
        return plain, False
    target = _protected_target(ctx, meta)
    if target is None:
        return plain, False
    threshold = ctx.settings.small_count_threshold
    locations = sorted({i["location"] for i in items})
    ends = sorted({i["target_end_date"] for i in items})
    mask = ctx.hidden_cells(target.frequency, target.variable, locations, pd.to_datetime(ends))
    row = {c: k for k, c in enumerate(locations)}
    col = {d: k for k, d in enumerate(ends)}
    out = []
    for item in items:
        if ctx.reads_unsuppressed(item["location"]):  # a scoped token's own territory
            out.append({**item, "suppressed": False})
            continue
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


def forecast(ctx: ReadContext, *, target: str, frequency: str | None, level: str | None,
             model: str | None, run_id: str | None, codes: list[str] | None,
             horizon: int | None) -> dict:
    """The forecast asked for (``/api/v1/forecasts``), as the caller may see it.

    Returns
    -------
    ``meta`` (the run: :func:`run_meta`), ``forecast_date``, ``hub`` (the run's Hub rows),
    ``items`` (one per location × target, with ``location_name`` and ``suppressed``: only
    ``codes`` and ``horizon`` when given) and ``suppression_threshold`` (None when nothing is
    suppressed for this caller).
    """
    level = forecast_level(ctx, level, codes)
    run = find_run(ctx, target, frequency, level, model, run_id)
    if ctx.is_public() and str(run.metadata.get("level", level)) not in PUBLIC_FORECAST_LEVELS \
            and not (codes and all(ctx.reads_unsuppressed(c) for c in codes)):
        # A scoped token reads the commune forecasts of its own communes, named in territory.
        raise aggregated_only(ctx, "forecasts", {"level": str(run.metadata.get("level", level))})
    meta = run_meta(run.metadata)
    pin_provenance(ctx, meta)
    ctx.set_last_modified(meta["created_at"] or None)
    grouped = run_items(ctx, run)
    items = grouped["items"]
    if codes:
        wanted = set(codes)
        items = [i for i in items if i["location"] in wanted]
    if horizon:
        items = [i for i in items if i["horizon"] == horizon]
    names = ctx.territory_table()
    threshold = ctx.settings.small_count_threshold
    out, suppress_counts = public_items(ctx, items, meta)
    out = [{**item, "location_name": names.get(item["location"], {}).get("name", "")}
           for item in out]
    return {"meta": meta, "forecast_date": grouped["forecast_date"], "hub": grouped["hub"],
            "items": out, "suppression_threshold": threshold if suppress_counts else None}


def forecast_runs(ctx: ReadContext, target: str | None, level: str | None,
                  model: str | None) -> list[dict]:
    """Stored runs newest first (:func:`run_meta`), of that target, level and model if given."""
    metas = [run_meta(r.metadata) for r in ctx.forecast_store().list_runs()]
    for key, wanted in (("target", target), ("level", level), ("model", model)):
        if wanted:
            metas = [m for m in metas if m[key] == wanted]
    return metas


def forecast_run(ctx: ReadContext, run_id: str) -> dict:
    """One stored run's metadata (:func:`run_meta`); 404 when there is none."""
    meta = run_meta(find_run(ctx, "", None, "", "", run_id).metadata)
    pin_provenance(ctx, meta)
    return meta
