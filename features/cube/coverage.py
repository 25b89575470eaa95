"""How complete the totals Vigie computed are (step 3 of :mod:`features.cube`): per computed
parent, the children its total needs and, for the dates it is absent, how many reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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
    """

    children: dict[str, int] = field(default_factory=dict)
    incomplete: dict[str, dict[str, int]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)

    def to_attr(self) -> str:
        return json.dumps({"children": self.children, "incomplete": self.incomplete},
                          separators=(",", ":"), sort_keys=True)


def totals_coverage(var: xr.DataArray) -> dict | None:
    """The ``computed_totals`` of a cube variable as a dict (``children``, ``incomplete``), or
    None when Vigie computed no total of it (every parent value is published, or the indicator
    is not aggregated)."""
    text = var.attrs.get(COVERAGE_ATTR)
    return json.loads(text) if text else None
