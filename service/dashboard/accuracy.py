"""« Précision des prévisions » as the page says it: the scores of
:func:`service.usecases.accuracy.accuracy` with their French titles, and the retrospective
track record grouped into one table per target.

The published forecasts' scores (per target × level, by forecast date and in all) come with
a French title and horizon unit; a target × level whose outcomes are not observed yet is only
named (``pending``). The retrospective rows (``models.trackrecord``: backtests of every
published target and level, over a development period and a held-out one) become one group
per (target, frequency) with one row per (level, period) (:func:`retrospective_record`).
"""

from __future__ import annotations

import numpy as np

TARGET_LABELS = {
    "inc_hosp": "Nouvelles hospitalisations",
    "inc_icu": "Nouvelles admissions en réanimation",
    "hosp": "Lits d'hospitalisation occupés",
    "icu": "Lits de réanimation occupés",
    "er_visits": "Passages aux urgences pour Covid-19",
    "unemployment": "Taux de chômage",
}
LEVEL_LABELS = {"national": "France entière", "region": "régions", "department": "départements"}
UNIT_LABELS = {"wk": "semaine", "day": "jour", "qtr": "trimestre"}
FREQUENCY_UNITS = {"weekly": "semaine", "daily": "jour", "quarterly": "trimestre"}
FREQUENCY_LABELS = {"weekly": "hebdomadaire", "daily": "quotidienne", "quarterly": "trimestrielle"}
PERIOD_LABELS = {"development": "développement", "held_out": "test (hors échantillon)"}
LEVEL_ORDER = {"national": 0, "region": 1, "department": 2}
TARGET_ORDER = {name: k for k, name in enumerate(TARGET_LABELS)}


def page_data(answer: dict) -> dict:
    """The page's data from the use case's ``answer``
    (:func:`service.usecases.accuracy.accuracy`)."""
    published = answer["published"]
    groups = [_titled(g) for g in published["groups"]]
    return {"groups": [g for g in groups if g["by_date"]],
            "pending": [g["title"] for g in groups if not g["by_date"]],
            "leaderboard": published["leaderboard"],
            "retrospective": retrospective_record(answer["retrospective"])}


def _titled(group: dict) -> dict:
    """A scored target × level with its French title and horizon unit."""
    target, level = group["target"], group["level"]
    return {**group, "unit": UNIT_LABELS.get(group["unit"], group["unit"]),
            "title": f"{TARGET_LABELS.get(target, target)} — {LEVEL_LABELS.get(level, level)}"}


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


NOT_YET = {
    "running": "en cours de calcul : les prévisions des semaines passées sont refaites sur "
               "les données de l'époque ; le tableau apparaîtra ici dans quelques minutes",
    "missing": "pas encore calculé : le calcul rétrospectif des prévisions n'a pas encore été "
               "fait sur cette installation (il est lancé de lui-même après le calcul des "
               "prévisions et prend plusieurs minutes)",
}


def retrospective_record(retro: dict) -> dict:
    """The retrospective track record (:func:`service.usecases.accuracy.retrospective`)
    grouped for the page.

    Returns ``{"available": False, "reason"}`` before it is computed (« en cours de calcul »
    while its job is queued or running), else ``{"available": True, "computed_at",
    "groups", "pending"}`` (``pending``: French titles of the targets still being computed)
    with one group per (target, frequency): its French ``title``, horizon
    ``unit``, ``horizons``, ``periods`` (each period's French label and dates) and ``rows``,
    one per (level, period), holding per horizon the relative WIS, 50 % and 90 % coverage
    and the number of forecasts scored.
    """
    rows = retro["rows"]
    if not rows:
        state = "running" if retro.get("state") in ("running", "queued") else "missing"
        return {"available": False, "reason": NOT_YET[state]}
    groups: dict[tuple[str, str], dict] = {}
    for row in rows:
        _add_row(groups, row)
    out = [_finished(group) for _, group in sorted(
        groups.items(), key=lambda kv: (TARGET_ORDER.get(kv[0][0], 99), kv[0]))]
    computed = sorted(str(r["computed_at"]) for r in rows if r.get("computed_at"))
    pending = [f"{TARGET_LABELS.get(p['target'], p['target'])} "
               f"({FREQUENCY_LABELS.get(p['frequency'], p['frequency'])})"
               for p in retro.get("pending") or []]
    return {"available": True, "computed_at": computed[-1] if computed else None,
            "groups": out, "pending": pending}


def _add_row(groups: dict[tuple[str, str], dict], row: dict) -> None:
    """Put one retrospective row (a target, level, period and horizon) in its group."""
    target, frequency = str(row.get("target")), str(row.get("frequency"))
    level, period = str(row.get("level")), str(row.get("period"))
    try:
        horizon = int(row["horizon"])
    except (KeyError, TypeError, ValueError):
        return
    group = groups.setdefault((target, frequency), {
        "target": target, "frequency": frequency,
        "title": f"{TARGET_LABELS.get(target, target)} "
                 f"({FREQUENCY_LABELS.get(frequency, frequency)})",
        "unit": FREQUENCY_UNITS.get(frequency, ""), "horizons": set(), "periods": {},
        "models": set(), "rows": {}})
    group["horizons"].add(horizon)
    group["models"].add(f"{row.get('model', '')} {row.get('model_version', '')}".strip())
    span = group["periods"].setdefault(period, {
        "period": period, "label": PERIOD_LABELS.get(period, period),
        "start": row.get("start"), "end": row.get("end")})
    span["start"] = min(filter(None, (span["start"], row.get("start"))), default=None)
    span["end"] = max(filter(None, (span["end"], row.get("end"))), default=None)
    line = group["rows"].setdefault((level, period), {
        "level": level, "level_label": LEVEL_LABELS.get(level, level).capitalize()
        if level != "national" else LEVEL_LABELS["national"],
        "period": period, "period_label": PERIOD_LABELS.get(period, period),
        "by_horizon": {}})
    line["by_horizon"][str(horizon)] = {
        "relative_wis": _number(row.get("relative_wis")),
        "coverage_50": _number(row.get("coverage_50")),
        "coverage_90": _number(row.get("coverage_90")),
        "n_forecasts": int(_number(row.get("n_forecasts")) or 0)}


def _finished(group: dict) -> dict:
    """A group with its horizons, models, periods and rows in the page's order."""
    lines = sorted(group["rows"].values(),
                   key=lambda r: (LEVEL_ORDER.get(r["level"], 9), r["period"] != "held_out",
                                  r["period"]))
    return {**group, "horizons": sorted(group["horizons"]),
            "models": sorted(m for m in group["models"] if m),
            "periods": sorted(group["periods"].values(),
                              key=lambda p: p["period"] != "development"),
            "rows": lines}
