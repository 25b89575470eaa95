"""``/api/v1/alerts``: per territory, the probability that ICU occupancy exceeds capacity
within 7 and 14 days, and an alert level.

Method (``source=forecast``, the default)
-----------------------------------------
* Capacity C: the territory's latest ``icu_beds_adult`` in the yearly cube (DREES, adult
  intensive-care beds, all sectors). The cube holds no general-ward capacity, so alerts are
  for ICU occupancy only. Beds are a public fact about equipment, shown to everyone exactly as
  ``/data`` shows them; the medians follow the forecasts' disclosure rule (docs/DISCLOSURE.md).
* Occupancy: the latest stored forecast of daily ``icu`` (beds occupied) at the territory's
  level, whose Hub targets are exactly ``7 day ahead icu`` and ``14 day ahead icu``.
* ``P(X_h > C) = 1 - F_h(C)`` with ``F_h`` interpolated linearly between the forecast's
  quantiles, and clipped to the probability range they cover (below the lowest quantile the
  answer is "at least 1 - q_min", above the highest "at most 1 - q_max").
* Within 7 days: ``P(X_7 > C)``. Within 14 days: ``max(P(X_7 > C), P(X_14 > C))`` — the
  probability of exceeding on *some* day is at least that (equal if trajectories are
  comonotone), so this is a lower bound, said so in ``method``.
* Level: ``red`` if P7 ≥ 0.5; ``orange`` if P14 ≥ 0.5 or P7 ≥ 0.2; ``yellow`` if P14 ≥ 0.1;
  ``green`` otherwise; ``unknown`` without capacity or forecast.

``source=scenario`` uses instead the newest finished *public* ``status_quo`` scenario run
covering the territory: its sampled trajectories give the within-window probabilities directly
(``prob_exceed_7d`` / ``prob_exceed_14d`` of the scenario summary). Public means the library's
``scenarios/status_quo.yaml`` run unmodified (same content hash) by the service, or a run an
admin published (``POST /api/v1/scenarios/runs/<id>/publish``): a planner's own run, whatever
its name, never becomes the alert (:func:`service.api.scenarios.public_runs`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from apiflask import APIBlueprint, Schema, fields
from apiflask.validators import Length, OneOf

from service.api.cache import cached
from service.api.formats import FormatQuery, clean, render
from service.api.lookups import open_dataset, parse_codes, territory_table
from service.api.paging import PageInfo, PageQuery, paginate
from service.audit import note
from service.errors import ApiError, bad_request
from service.usecases.forecast_reads import (
    LEVEL_OF,
    find_run,
    public_items,
    run_items,
    run_meta,
)

PREFIX = "alerts"
bp = APIBlueprint("alerts", __name__, tag="alerts")

LEVEL_WORDS = {"red": "rouge", "orange": "orange", "yellow": "jaune", "green": "vert",
               "unknown": "inconnu"}


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


def prob_exceed(levels: np.ndarray, values: np.ndarray, capacity: float) -> float:
    """``1 - F(capacity)`` from quantiles (levels ascending), clipped to their range."""
    values = np.maximum.accumulate(np.asarray(values, dtype=float))  # monotone quantiles
    levels = np.asarray(levels, dtype=float)
    if capacity < values[0]:
        return float(1 - levels[0])
    if capacity >= values[-1]:
        return float(1 - levels[-1])
    # Flat stretches (equal quantile values) would make interp ambiguous: take the upper level.
    idx = np.searchsorted(values, capacity, side="right")
    lo, hi = idx - 1, idx
    span = values[hi] - values[lo]
    frac = 0.0 if span <= 0 else (capacity - values[lo]) / span
    return float(1 - (levels[lo] + frac * (levels[hi] - levels[lo])))


def alert_level(p7: float | None, p14: float | None) -> str:
    if p7 is None or p14 is None:
        return "unknown"
    if p7 >= 0.5:
        return "red"
    if p14 >= 0.5 or p7 >= 0.2:
        return "orange"
    if p14 >= 0.1:
        return "yellow"
    return "green"


def message_fr(name: str, capacity: float | None, p7: float | None, p14: float | None,
               level: str) -> str:
    """A sentence a non-expert can read aloud."""
    if capacity is None:
        return f"{name} : capacité en réanimation inconnue, pas d'alerte calculée."
    if p7 is None or p14 is None:
        return f"{name} : pas de prévision d'occupation en réanimation disponible."

    def pct(p: float) -> str:
        if p < 0.01:
            return "moins de 1 %"
        if p > 0.99:
            return "plus de 99 %"
        return f"{round(100 * p)} %"

    return (f"{name} : risque de dépasser les {int(capacity)} lits de réanimation adultes "
            f"de {pct(p7)} d'ici 7 jours et de {pct(p14)} d'ici 14 jours "
            f"(niveau {LEVEL_WORDS[level]}).")


def capacities(on: str | None = None) -> dict[str, tuple[float, str]]:
    """Territory → (adult ICU beds, their date): the latest dated on or before ``on`` (the
    forecast date: capacity as it stood then), else the earliest known."""
    try:
        ds = open_dataset("yearly")
    except KeyError:
        return {}
    if "icu_beds_adult" not in ds:
        return {}
    var = ds["icu_beds_adult"].transpose("territory", "date").values
    dates = pd.DatetimeIndex(ds["date"].values)
    out = {}
    for i, code in enumerate(ds["territory"].values.tolist()):
        ok = np.flatnonzero(~np.isnan(var[i]))
        if not len(ok):
            continue
        before = ok[dates[ok] <= pd.Timestamp(on)] if on else ok
        j = before[-1] if len(before) else ok[0]
        out[str(code)] = (float(var[i, j]), str(dates[j].date()))
    return out


def _from_forecast(codes: list[str], level: str, model: str | None) -> tuple[dict, dict]:
    run = find_run("icu", "daily", level, model)
    meta = run_meta(run.metadata)
    # The answer's provenance is the forecast's own (its vintage, not the cube served now).
    note(pin=True, vintage_id=meta["vintage_id"], run_id=meta["run_id"],
         model_version=f"{meta['model']}@{meta['model_version']}")
    grouped = run_items(run)
    per: dict[str, dict[int, dict]] = {}
    for item in grouped["items"]:
        per.setdefault(item["location"], {})[item["horizon"]] = item
    caps = capacities(grouped["forecast_date"])
    # Medians as /forecasts shows them to this caller (docs/DISCLOSURE.md, "Forecasts").
    wanted = set(codes)
    shown = {(i["location"], i["horizon"]): i["median"] for i in public_items(
        [i for i in grouped["items"] if i["location"] in wanted and i["horizon"] in (7, 14)],
        meta)[0]}
    out = {}
    for code in codes:
        cap = caps.get(code)
        horizons = per.get(code, {})
        p7 = p14 = m7 = m14 = None
        if cap is not None and 7 in horizons and 14 in horizons:
            probs = []
            for h in (7, 14):
                qs = horizons[h]["quantiles"]
                lv = np.array([q["quantile"] for q in qs])
                vals = np.array([np.nan if q["value"] is None else q["value"] for q in qs])
                probs.append(prob_exceed(lv, vals, cap[0]) if np.isfinite(vals).all() else None)
            if None not in probs:
                p7, p14 = round(probs[0], 3), round(max(probs), 3)
        m7, m14 = shown.get((code, 7)), shown.get((code, 14))
        out[code] = {"capacity": cap[0] if cap else None, "capacity_date": cap[1] if cap else None,
                     "median_7d": m7, "median_14d": m14, "p_exceed_7d": p7, "p_exceed_14d": p14}
    info = {"run_id": meta["run_id"], "vintage_id": meta["vintage_id"],
            "forecast_date": grouped["forecast_date"]}
    return out, info


def _from_scenario(codes: list[str]) -> tuple[dict, dict]:
    from service.api.scenarios import load_result, public_runs, vintage_id_of

    # Public runs only (library status quo run by the service, or published by an admin),
    # whoever asks: a planner's own run never becomes the alert.
    chosen = None
    for run in public_runs("status_quo"):
        result = load_result(run["id"])
        if result and any(c in (result.get("summary") or {}) for c in codes):
            chosen = (run, result)
            break
    if chosen is None:
        raise ApiError(404, "no_scenario", "no public status_quo scenario run covers these "
                       "territories: the service runs the library's (python -m service jobs "
                       "run scenario --param name=status_quo) or an admin publishes a run "
                       "(POST /api/v1/scenarios/runs/<id>/publish)",
                       {"territories": codes[:20]})
    run, result = chosen
    out = {}
    for code in codes:
        icu = ((result.get("summary") or {}).get(code) or {}).get("icu") or {}
        out[code] = {"capacity": clean(icu.get("capacity")), "capacity_date": None,
                     "median_7d": None, "median_14d": None,
                     "p_exceed_7d": clean(icu.get("prob_exceed_7d")),
                     "p_exceed_14d": clean(icu.get("prob_exceed_14d"))}
    note(pin=True, vintage_id=vintage_id_of(result), run_id=f"scenario:{run['id']}")
    return out, {"run_id": f"scenario:{run['id']}", "vintage_id": vintage_id_of(result),
                 "forecast_date": (result.get("inputs") or {}).get("as_of")}


METHODS = {
    "forecast": "P(ICU occupancy > adult ICU beds) from the quantiles of the daily icu "
                "forecast at 7 and 14 days (linear interpolation of the CDF); 'within 14 days' "
                "is the max over the two horizons, a lower bound",
    "scenario": "share of status-quo scenario trajectories exceeding adult ICU beds on at "
                "least one day within 7 / 14 days; from the newest public status_quo run (the "
                "library file, unmodified, run by the service, or a run an admin published)",
}


@bp.get("")
@bp.input(AlertQuery, location="query")
@bp.output(AlertOut)
@bp.doc(summary="Capacity alerts: P(ICU occupancy > beds) within 7 and 14 days")
@cached
def get_alerts(query_data: dict):
    table = territory_table()
    level = query_data["level"]
    codes = parse_codes(query_data.get("territory"))
    if codes:
        unknown = [c for c in codes if c not in table]
        if unknown:
            raise bad_request("unknown territory code(s)", unknown=unknown)
        levels = {LEVEL_OF.get(table[c]["level"]) for c in codes}
        if len(levels) != 1 or None in levels:
            raise bad_request("give territories of one level: France, régions or départements",
                              territories=codes)
        level = levels.pop()
    else:
        codes = [c for c, r in table.items() if LEVEL_OF.get(r["level"]) == level]
    if query_data["source"] == "forecast":
        figures, info = _from_forecast(codes, level, query_data.get("model"))
    else:
        figures, info = _from_scenario(codes)
    rows = []
    for code in codes:
        f = figures[code]
        lvl = alert_level(f["p_exceed_7d"], f["p_exceed_14d"])
        name = table[code]["name"]
        row = {"territory": code, "name": name, **f, "level": lvl,
               "message": message_fr(name, f["capacity"], f["p_exceed_7d"],
                                     f["p_exceed_14d"], lvl)}
        rows.append(row)
    items, page = paginate(rows, query_data)
    return render({"source": query_data["source"], "method": METHODS[query_data["source"]],
                   **info, "items": items, "pagination": page}, query_data,
                  columns=list(AlertItem().fields), filename="vigie_alerts")
