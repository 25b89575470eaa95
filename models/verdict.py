"""Does Vigie beat the baseline for a target? A verdict read from its track record.

The rows are those of the retrospective track record (:data:`models.trackrecord.ROW_FIELDS`:
relative WIS against the Hub baseline by level, period and horizon). The verdict is given on
the held-out dates (forecast dates from 2021-03-01, never used to choose a model) when any was
scored, else on the development period, and said as such:

* ``beats_baseline``: relative WIS below 1 at every horizon of every level scored;
* ``does_not_beat_baseline``: 1 or more at every horizon of every level;
* ``mixed``: better at some levels or horizons, not at others (each level says which);
* ``not_scored``: no scored forecast yet (too short a series, or the track record not
  computed yet).

Relative WIS exactly 1 is "not better": a target whose every forecast fell back to the
baseline (a short series) scores 1 and does not beat it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STATUSES = ("beats_baseline", "mixed", "does_not_beat_baseline", "not_scored")
#: Forecast levels in the order a verdict lists them.
LEVEL_ORDER = ("national", "region", "department", "epci", "commune")


def _status(values: Iterable[float]) -> str:
    values = list(values)
    if not values:
        return "not_scored"
    if all(v < 1 for v in values):
        return "beats_baseline"
    if all(v >= 1 for v in values):
        return "does_not_beat_baseline"
    return "mixed"


def baseline_verdict(rows: Iterable[Mapping[str, Any]]) -> dict:
    """The verdict of one target from its track-record rows (all levels, periods, horizons).

    Returns
    -------
    ``{"status", "period", "levels": [{"level", "status", "relative_wis": {horizon: value},
    "development": {horizon: value}, "n_forecasts"}]}``; ``period`` is ``held_out``,
    ``development`` or None (not scored).
    """
    rows = [r for r in rows if r.get("relative_wis") is not None]
    periods = {str(r.get("period")) for r in rows}
    period = "held_out" if "held_out" in periods else (
        "development" if "development" in periods else None)
    levels = []
    for level in sorted({str(r.get("level")) for r in rows},
                        key=lambda lv: (LEVEL_ORDER.index(lv) if lv in LEVEL_ORDER else 99, lv)):
        mine = [r for r in rows if r.get("level") == level]
        judged = {int(r["horizon"]): float(r["relative_wis"]) for r in mine
                  if r.get("period") == period}
        levels.append({
            "level": level, "status": _status(judged.values()),
            "relative_wis": {str(h): round(v, 3) for h, v in sorted(judged.items())},
            "development": {str(int(r["horizon"])): round(float(r["relative_wis"]), 3)
                            for r in sorted(mine, key=lambda r: int(r["horizon"]))
                            if r.get("period") == "development"},
            "n_forecasts": int(sum(int(r.get("n_forecasts") or 0) for r in mine
                                   if r.get("period") == period)),
        })
    statuses = {lv["status"] for lv in levels if lv["status"] != "not_scored"}
    if not statuses:
        status = "not_scored"
    elif len(statuses) == 1:
        status = statuses.pop()
    else:
        status = "mixed"
    return {"status": status, "period": period if levels else None, "levels": levels}
