"""Indicator metadata: stable names, units, frequency and how they aggregate across territories."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Frequency = Literal["daily", "weekly", "quarterly", "yearly"]
FREQUENCIES: tuple[str, ...] = ("daily", "weekly", "quarterly", "yearly")

#: How an indicator combines over child territories.
#: ``sum`` for counts, ``population_mean`` for rates and percentages (weighted by INSEE
#: population), ``national`` for values defined once for France and repeated for every territory,
#: ``none`` when no aggregate makes sense (only published values are kept).
Aggregation = Literal["sum", "population_mean", "national", "none"]


@dataclass(frozen=True)
class IndicatorSpec:
    """What one indicator means.

    Attributes
    ----------
    name:
        Stable identifier used in the cube, the API and the CLI (e.g. ``inc_hosp``).
    frequency:
        Which cube dataset holds it.
    units:
        Physical units, e.g. ``admissions/day``, ``beds``, ``%``.
    aggregation:
        See :data:`Aggregation`.
    count:
        True for counts of people (subject to small-count suppression, must be >= 0).
    """

    name: str
    frequency: Frequency
    units: str
    description: str
    source: str
    licence: str
    aggregation: Aggregation = "sum"
    count: bool = False

    def attrs(self) -> dict[str, str]:
        d = asdict(self)
        d["count"] = int(self.count)
        return {k: (str(v) if not isinstance(v, int) else v) for k, v in d.items() if k != "name"}
