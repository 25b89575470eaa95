"""ICU capacity alerts (``/api/v1/alerts``): per territory, the probability that ICU occupancy
exceeds the adult ICU beds within 7 and 14 days, the alert level and a French sentence.

The rule is the domain's (:mod:`models.alerts`); this use case finds its inputs:

* ``source="forecast"`` (default): the latest stored forecast of daily ``icu`` at the
  territories' level (:mod:`service.usecases.forecast_reads`), the beds of the served yearly
  cube as they stood on the forecast date, and the medians as ``/forecasts`` shows them to
  this caller (docs/DISCLOSURE.md, "Forecasts"). Beds are a public fact about equipment, shown
  to everyone exactly as ``/data`` shows them.
* ``source="scenario"``: the newest finished *public* ``status_quo`` scenario run covering the
  territories (its sampled trajectories give the within-window probabilities directly). Public
  means the library's ``scenarios/status_quo.yaml`` run unmodified (same content hash) by the
  service, or a run an admin published: a planner's own run, whatever its name, never becomes
  the alert (:func:`service.usecases.scenarios.public_runs`).

A read use case (:mod:`service.usecases.reads`): it reads through the context it is given, and
pins the answer's provenance to the forecast's (or scenario run's) own vintage and run.
"""

from __future__ import annotations

from features.storage.jsonsafe import scalar as clean
from models.alerts import HORIZONS, METHODS, alert_level, capacities, exceedance, message_fr
from service.errors import ApiError, bad_request
from service.usecases.forecast_reads import (
    LEVEL_OF,
    find_run,
    pin_provenance,
    public_items,
    run_items,
    run_meta,
)
from service.usecases.reads import ReadContext, parse_codes


def alert_territories(table: dict[str, dict], codes: list[str] | None, level: str
                      ) -> tuple[list[str], str]:
    """The territories of the answer and their level: ``codes`` (all of one level: France,
    régions or départements), else every territory of ``level`` (``table``: the served
    territories)."""
    if not codes:
        return [c for c, r in table.items() if LEVEL_OF.get(r["level"]) == level], level
    unknown = [c for c in codes if c not in table]
    if unknown:
        raise bad_request("unknown territory code(s)", unknown=unknown)
    levels = {LEVEL_OF.get(table[c]["level"]) for c in codes}
    if len(levels) != 1 or None in levels:
        raise bad_request("give territories of one level: France, régions or départements",
                          territories=codes)
    return codes, levels.pop()


def _yearly(ctx: ReadContext):
    try:
        return ctx.open_dataset("yearly")
    except KeyError:
        return None


def _from_forecast(ctx: ReadContext, codes: list[str], level: str, model: str | None
                   ) -> tuple[dict, dict]:
    run = find_run(ctx, "icu", "daily", level, model)
    meta = run_meta(run.metadata)
    pin_provenance(ctx, meta)
    grouped = run_items(ctx, run)
    per: dict[str, dict[int, list]] = {}
    for item in grouped["items"]:
        per.setdefault(item["location"], {})[item["horizon"]] = item["quantiles"]
    caps = capacities(_yearly(ctx), grouped["forecast_date"])
    # Medians as /forecasts shows them to this caller (docs/DISCLOSURE.md, "Forecasts").
    wanted = set(codes)
    shown = {(i["location"], i["horizon"]): i["median"] for i in public_items(
        ctx, [i for i in grouped["items"] if i["location"] in wanted and i["horizon"] in HORIZONS],
        meta)[0]}
    out = {}
    for code in codes:
        cap = caps.get(code)
        p7, p14 = exceedance(per.get(code, {}), cap[0] if cap else None)
        out[code] = {"capacity": cap[0] if cap else None, "capacity_date": cap[1] if cap else None,
                     "median_7d": shown.get((code, 7)), "median_14d": shown.get((code, 14)),
                     "p_exceed_7d": p7, "p_exceed_14d": p14}
    info = {"run_id": meta["run_id"], "vintage_id": meta["vintage_id"],
            "forecast_date": grouped["forecast_date"]}
    return out, info


def _public_status_quo(ctx: ReadContext, codes: list[str]) -> tuple[dict, dict]:
    """The newest public ``status_quo`` run covering any of ``codes`` and its result; 404
    without one."""
    from service.usecases.scenarios import load_result, public_runs

    for run in public_runs(ctx.settings, ctx.engine, "status_quo"):
        result = load_result(ctx.settings, run["id"])
        if result and any(c in (result.get("summary") or {}) for c in codes):
            return run, result
    raise ApiError(404, "no_scenario", "no public status_quo scenario run covers these "
                   "territories: the service runs the library's (python -m service jobs "
                   "run scenario --param name=status_quo) or an admin publishes a run "
                   "(POST /api/v1/scenarios/runs/<id>/publish)",
                   {"territories": codes[:20]})


def _from_scenario(ctx: ReadContext, codes: list[str]) -> tuple[dict, dict]:
    from service.usecases.scenarios import vintage_id_of

    # Public runs only (library status quo run by the service, or published by an admin),
    # whoever asks: a planner's own run never becomes the alert.
    run, result = _public_status_quo(ctx, codes)
    out = {}
    for code in codes:
        icu = ((result.get("summary") or {}).get(code) or {}).get("icu") or {}
        out[code] = {"capacity": clean(icu.get("capacity")), "capacity_date": None,
                     "median_7d": None, "median_14d": None,
                     "p_exceed_7d": clean(icu.get("prob_exceed_7d")),
                     "p_exceed_14d": clean(icu.get("prob_exceed_14d"))}
    ctx.note(pin=True, vintage_id=vintage_id_of(result), run_id=f"scenario:{run['id']}")
    return out, {"run_id": f"scenario:{run['id']}", "vintage_id": vintage_id_of(result),
                 "forecast_date": (result.get("inputs") or {}).get("as_of")}


def capacity_alerts(ctx: ReadContext, *, source: str, level: str, territory: str | None,
                    model: str | None = None) -> dict:
    """The alerts of the ``territory`` codes (comma-separated; default: every territory of
    ``level``) from ``source`` (``forecast`` or ``scenario``).

    Returns
    -------
    ``source``, ``method`` (:data:`models.alerts.METHODS`), ``run_id``, ``vintage_id``,
    ``forecast_date`` and ``rows``: per territory its ``name``, ``capacity`` and its date,
    the medians at 7 and 14 days (forecast only), ``p_exceed_7d``, ``p_exceed_14d``, the
    ``level`` (:func:`models.alerts.alert_level`) and the ``message``.
    """
    table = ctx.territory_table()
    codes, level = alert_territories(table, parse_codes(territory), level)
    if source == "forecast":
        figures, info = _from_forecast(ctx, codes, level, model)
    else:
        figures, info = _from_scenario(ctx, codes)
    rows = []
    for code in codes:
        f = figures[code]
        lvl = alert_level(f["p_exceed_7d"], f["p_exceed_14d"])
        name = table[code]["name"]
        rows.append({"territory": code, "name": name, **f, "level": lvl,
                     "message": message_fr(name, f["capacity"], f["p_exceed_7d"],
                                           f["p_exceed_14d"], lvl)})
    return {"source": source, "method": METHODS[source], **info, "rows": rows}
