"""Hand-built inputs of the unit tests: a registry of six territories and tidy source results.

The registry (:func:`territories`)::

    FR ─┬─ R53 ─┬─ 35 (1,000,000) ── commune 35238, EPCI 243500139
        │       └─ 22 (600,000)
        ├─ R84 ─┬─ 69 (1,800,000) ── commune 69123
        │       └─ 01 (650,000)
        └─ 978, a collectivité (35,000)

so that every expected value in the tests can be worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.base import SourceResult
from features.territories import Territories

POPULATION = {"35": 1_000_000.0, "22": 600_000.0, "69": 1_800_000.0, "01": 650_000.0,
              "978": 35_000.0}


def territories() -> Territories:
    deps = pd.DataFrame({
        "dep_code": ["35", "22", "69", "01", "978"],
        "dep_name": ["Ille-et-Vilaine", "Côtes-d'Armor", "Rhône", "Ain", "Saint-Martin"],
        "reg_code": ["53", "53", "84", "84", ""],
        "reg_name": ["Bretagne", "Bretagne", "Auvergne-Rhône-Alpes", "Auvergne-Rhône-Alpes", ""],
        "zone": ["metro", "metro", "metro", "metro", "com"],
        "population_legale_2020": [POPULATION[c] for c in ("35", "22", "69", "01", "978")],
    })
    communes = pd.DataFrame({"commune_insee": ["35238", "69123"],
                             "commune_name": ["Rennes", "Lyon"], "dep_code": ["35", "69"],
                             "population_legale_2020": [220_000.0, 520_000.0]})
    epcis = pd.DataFrame({"code": ["243500139"], "name": ["Rennes Métropole"],
                          "population": [450_000.0], "parent": ["35"]})
    return Territories.from_frames(deps, communes, epcis)


def spec(name: str, frequency: str = "daily", aggregation: str = "sum", count: bool = True,
         stock: bool = False, units: str = "persons/day") -> IndicatorSpec:
    return IndicatorSpec(name, frequency, units, f"test indicator {name}", "test", "test",
                         aggregation, count=count, stock=stock)


def tidy(values: dict[str, list[float]], start: str, indicator: str,
         freq: str = "D") -> pd.DataFrame:
    """Tidy rows of one indicator: territory → consecutive values from ``start`` (NaN: no
    row)."""
    rows = []
    for code, series in values.items():
        dates = pd.date_range(start, periods=len(series), freq=freq)
        rows += [(code, d, indicator, float(v)) for d, v in zip(dates, series, strict=True)
                 if not np.isnan(v)]
    frame = pd.DataFrame(rows, columns=["territory", "date", "indicator", "value"])
    frame["date"] = frame["date"].astype("datetime64[ns]")
    return frame


def result(name: str, frames: list[pd.DataFrame], specs: list[IndicatorSpec]) -> SourceResult:
    return SourceResult(name, pd.concat(frames, ignore_index=True), list(specs))
