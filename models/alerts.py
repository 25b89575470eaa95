"""Capacity alerts: the probability that ICU occupancy exceeds capacity within 7 and 14 days,
and an alert level (served by ``/api/v1/alerts``).

Method (from a forecast)
------------------------
* Capacity C: the territory's adult ICU beds (``icu_beds_adult``, yearly cube, DREES, all
  sectors), the latest dated on or before the forecast date (:func:`capacities`). The cube
  holds no general-ward capacity, so alerts are for ICU occupancy only.
* Occupancy: a quantile forecast of daily ``icu`` (beds occupied) at 7 and 14 days ahead.
* ``P(X_h > C) = 1 - F_h(C)`` with ``F_h`` interpolated linearly between the forecast's
  quantiles, and clipped to the probability range they cover (below the lowest quantile the
  answer is "at least 1 - q_min", above the highest "at most 1 - q_max"): :func:`prob_exceed`.
* Within 7 days: ``P(X_7 > C)``. Within 14 days: ``max(P(X_7 > C), P(X_14 > C))`` — the
  probability of exceeding on *some* day is at least that (equal if trajectories are
  comonotone), so this is a lower bound, said so in :data:`METHODS` (:func:`exceedance`).
* Level: ``red`` if P7 ≥ 0.5; ``orange`` if P14 ≥ 0.5 or P7 ≥ 0.2; ``yellow`` if P14 ≥ 0.1;
  ``green`` otherwise; ``unknown`` without capacity or forecast (:func:`alert_level`).

From a scenario, the within-window probabilities are the share of sampled trajectories that
exceed the beds on at least one day (the scenario summary's ``prob_exceed_7d`` /
``prob_exceed_14d``); the level and the message follow the same rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The horizons (days ahead) the alert is about.
HORIZONS = (7, 14)

#: The capacity indicator of the yearly cube.
CAPACITY = "icu_beds_adult"

LEVEL_WORDS = {"red": "rouge", "orange": "orange", "yellow": "jaune", "green": "vert",
               "unknown": "inconnu"}

METHODS = {
    "forecast": "P(ICU occupancy > adult ICU beds) from the quantiles of the daily icu "
                "forecast at 7 and 14 days (linear interpolation of the CDF); 'within 14 days' "
                "is the max over the two horizons, a lower bound",
    "scenario": "share of status-quo scenario trajectories exceeding adult ICU beds on at "
                "least one day within 7 / 14 days; from the newest public status_quo run (the "
                "library file, unmodified, run by the service, or a run an admin published)",
}


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


def exceedance(quantiles: dict[int, list[dict]], capacity: float | None
               ) -> tuple[float | None, float | None]:
    """(P within 7 days, P within 14 days), rounded to 3 decimals, from the forecast's
    quantiles per horizon (``[{"quantile", "value"}, …]`` for 7 and 14); (None, None) without
    capacity, without either horizon or with a missing quantile value."""
    if capacity is None or any(h not in quantiles for h in HORIZONS):
        return None, None
    probs = []
    for h in HORIZONS:
        qs = quantiles[h]
        levels = np.array([q["quantile"] for q in qs])
        values = np.array([np.nan if q["value"] is None else q["value"] for q in qs])
        if not np.isfinite(values).all():
            return None, None
        probs.append(prob_exceed(levels, values, capacity))
    return round(probs[0], 3), round(max(probs), 3)


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


def _pct(p: float) -> str:
    if p < 0.01:
        return "moins de 1 %"
    if p > 0.99:
        return "plus de 99 %"
    return f"{round(100 * p)} %"


def message_fr(name: str, capacity: float | None, p7: float | None, p14: float | None,
               level: str) -> str:
    """A sentence a non-expert can read aloud."""
    if capacity is None:
        return f"{name} : capacité en réanimation inconnue, pas d'alerte calculée."
    if p7 is None or p14 is None:
        return f"{name} : pas de prévision d'occupation en réanimation disponible."
    return (f"{name} : risque de dépasser les {int(capacity)} lits de réanimation adultes "
            f"de {_pct(p7)} d'ici 7 jours et de {_pct(p14)} d'ici 14 jours "
            f"(niveau {LEVEL_WORDS[level]}).")


def capacities(yearly, on: str | None = None) -> dict[str, tuple[float, str]]:
    """Territory → (adult ICU beds, their date) from the yearly cube ``yearly`` (None: no
    yearly cube): the latest dated on or before ``on`` (the forecast date: capacity as it
    stood then), else the earliest known."""
    if yearly is None or CAPACITY not in yearly:
        return {}
    var = yearly[CAPACITY].transpose("territory", "date").values
    dates = pd.DatetimeIndex(yearly["date"].values)
    out = {}
    for i, code in enumerate(yearly["territory"].values.tolist()):
        ok = np.flatnonzero(~np.isnan(var[i]))
        if not len(ok):
            continue
        before = ok[dates[ok] <= pd.Timestamp(on)] if on else ok
        j = before[-1] if len(before) else ok[0]
        out[str(code)] = (float(var[i, j]), str(dates[j].date()))
    return out
