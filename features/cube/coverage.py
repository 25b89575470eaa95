"""How complete the totals Vigie computed are (step 3 of :mod:`features.cube`): per computed
parent, the children its total needs and, for the dates it is absent, how many reported; for a
total summed from communes, how many of the territory's communes and what share of its
population it covers, and the population its per-100,000 rate divides by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

#: Attribute of a variable describing the totals Vigie computed for it (JSON, see
#: :class:`TotalsCoverage`).
COVERAGE_ATTR = "computed_totals"


@dataclass
class TotalsCoverage:
    """Which totals of one indicator Vigie computed, and how complete each cell was.

    ``children``: computed parent code → number of children its total needs (m);
    ``incomplete``: parent code → {ISO date: children that reported (n, 0 < n < m)} for the
    dates the total is absent because some children did not report. A computed parent cell
    with a value had all m children; one absent and not listed had none. Stored in the
    variable's attrs as JSON (``computed_totals``); ``members`` (the children's codes) is kept
    for the weekly sums and not stored.

    ``communes``: for the totals summed from communes (a département's, a collectivité's or an
    EPCI's, :func:`features.cube.totals.commune_totals`), parent code → ``{"members": the
    territory's communes in the registry, "reporting": those that report the indicator (its
    children), "population": their population, "population_share": their share of the
    territory's population}``. A share below 1 is a **partial sum**: the sum over the
    reporting communes, never the territory's total (stored only when some total was summed
    from communes, so other variables' attribute is unchanged).
    """

    children: dict[str, int] = field(default_factory=dict)
    incomplete: dict[str, dict[str, int]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    communes: dict[str, dict] = field(default_factory=dict)

    def to_attr(self) -> str:
        out = {"children": self.children, "incomplete": self.incomplete}
        if self.communes:
            out["communes"] = self.communes
        return json.dumps(out, separators=(",", ":"), sort_keys=True)


def totals_coverage(var: xr.DataArray) -> dict | None:
    """The ``computed_totals`` of a cube variable as a dict (``children``, ``incomplete``), or
    None when Vigie computed no total of it (every parent value is published, or the indicator
    is not aggregated)."""
    text = var.attrs.get(COVERAGE_ATTR)
    return json.loads(text) if text else None


def is_partial(entry: dict | None) -> bool:
    """A total summed from communes (an entry of ``communes``) that covers less than the whole
    territory's population (or an unknown share): the sum over the reporting communes."""
    if not entry:
        return False
    share = entry.get("population_share")
    return share is None or not share >= 1.0 - 1e-9


def rate_population(var: xr.DataArray) -> np.ndarray:
    """The population a per-100,000 rate of ``var`` divides by, one per territory of ``var``
    (in its order): for a total summed from communes, the population of the communes summed
    (so a partial sum gives the rate of the population it covers, never a rate diluted by the
    communes that did not report); otherwise the territory's ``population`` coordinate. NaN
    where no population is known."""
    codes = [str(c) for c in var["territory"].values]
    if "population" in var.coords:
        population = np.asarray(var["population"].values, dtype=float).copy()
    else:
        population = np.full(len(codes), np.nan)
    communes = (totals_coverage(var) or {}).get("communes", {})
    for i, code in enumerate(codes):
        if code in communes:
            value = communes[code].get("population")
            population[i] = np.nan if value is None else float(value)
    with np.errstate(invalid="ignore"):
        return np.where(population > 0, population, np.nan)


def per_100k(var: xr.DataArray) -> xr.DataArray | None:
    """``var`` per 100,000 inhabitants (:func:`rate_population`) for a count that adds up
    over territories (``count`` 1, ``aggregation`` ``sum``); None for anything else (rates,
    indices, shares are not divided again)."""
    if not int(var.attrs.get("count", 0) or 0) or var.attrs.get("aggregation") != "sum":
        return None
    population = xr.DataArray(rate_population(var), dims=("territory",),
                              coords={"territory": var["territory"].values})
    out = var / population * 100_000.0
    return out.assign_attrs(units=f"{var.attrs.get('units', '')} per 100,000 inhabitants",
                            description=f"{var.attrs.get('description', '')} per 100,000 "
                                        "inhabitants (of the communes summed, for a sum of "
                                        "communes)")
