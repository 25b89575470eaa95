"""A hand-built registry where a commune has two parents in two trees (features/territories.py):

    administrative tree (parent)                    groupement (group)
    FR ─┬─ R53 ─┬─ 35 (1,000) ─ 35001 (400)  ─────  E1 200000001 = 35001 + 22001
        │       │             ─ 35002 (100)  ─┐     (spans 35 and 22; parent 35: 400 vs 150)
        │       │             ─ 35003 (500)  ─┴───  E2 200000002 = 35002 + 35003
        │       └─ 22 (500) ─── 22001 (150)  ─────  E1
        │                     ─ 22002 (350)  ─────  E3 200000003 = 22002
        └─ R84 ─── 69 (800) ─── 69001 (800)         (in no EPCI)

Each département's population is the sum of its communes', each EPCI's the sum of its
members', so that every coverage share and per-100,000 rate can be worked out by hand.
"""

from __future__ import annotations

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.base import SourceResult
from features.territories import Territories

E1, E2, E3 = "200000001", "200000002", "200000003"
COMMUNES = {"35001": ("35", 400.0, E1), "35002": ("35", 100.0, E2),
            "35003": ("35", 500.0, E2), "22001": ("22", 150.0, E1),
            "22002": ("22", 350.0, E3), "69001": ("69", 800.0, "")}
W1, W2 = "2021-01-02", "2021-01-09"  # two Saturdays


def territories() -> Territories:
    deps = pd.DataFrame({
        "dep_code": ["35", "22", "69"], "dep_name": ["Ille-et-Vilaine", "Côtes-d'Armor", "Rhône"],
        "reg_code": ["53", "53", "84"],
        "reg_name": ["Bretagne", "Bretagne", "Auvergne-Rhône-Alpes"],
        "zone": ["metro"] * 3, "population_legale_2020": [1000.0, 500.0, 800.0]})
    communes = pd.DataFrame({
        "commune_insee": list(COMMUNES), "commune_name": [f"commune {c}" for c in COMMUNES],
        "dep_code": [v[0] for v in COMMUNES.values()],
        "population_legale_2020": [v[1] for v in COMMUNES.values()]})
    members = pd.DataFrame({"epci_code": [v[2] for v in COMMUNES.values() if v[2]],
                            "commune_code": [c for c, v in COMMUNES.items() if v[2]]})
    population = {e: sum(v[1] for v in COMMUNES.values() if v[2] == e) for e in (E1, E2, E3)}
    epcis = pd.DataFrame({"code": [E1, E2, E3], "name": ["EPCI one", "EPCI two", "EPCI three"],
                          "population": [population[e] for e in (E1, E2, E3)],
                          "parent": ["35", "35", "22"]})
    return Territories.from_frames(deps, communes, epcis, members)


def weekly(values: dict[str, list[float | None]], indicator: str = "food_aid_requests",
           aggregation: str = "sum", count: bool = True) -> SourceResult:
    """A weekly city indicator: territory → its values on W1, W2 (None: no row)."""
    rows = [(code, pd.Timestamp(week), indicator, float(v))
            for code, series in values.items()
            for week, v in zip((W1, W2), series, strict=False) if v is not None]
    frame = pd.DataFrame(rows, columns=["territory", "date", "indicator", "value"])
    frame["date"] = frame["date"].astype("datetime64[ns]")
    spec = IndicatorSpec(indicator, "weekly", "requests/week" if count else "%",
                         f"test city indicator {indicator}", "test city", "test", aggregation,
                         count=count)
    return SourceResult("city", frame, [spec])
