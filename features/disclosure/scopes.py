"""What a territorial scope reads: the public masks with the scope's own cells shown.

A ``city`` token reads its territories unsuppressed and the public answers elsewhere. Its
reader can also read the public answers anonymously, so what it knows is the public's visible
cells *and* the scope's cells. Showing a scope's hidden cell can therefore give back a cell the
public mask hides outside the scope: a département is the sum of its communes, so with the
département's total visible, two hidden communes of which one is the city's, the city's own
value gives the other city's back.

So, per protected count, the scope's cells are shown only when the cells still hidden (the
public mask outside the scope) stay protected against that knowledge by the same rule and audit
as the public mask (:func:`features.disclosure.audit.violations`, :func:`~.audit.determined`,
with the cells the public knew from earlier vintages as values, docs/DISCLOSURE.md). When they
would not, the count stays as the public sees it for that scope (fail closed; logged). Values
derived from counts (incidence, rates, …) are shown in the scope only when every count was.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import xarray as xr

from features.disclosure.audit import determined, violations
from features.disclosure.record import PublicMasks

log = logging.getLogger(__name__)


def scope_masks(public: PublicMasks, datasets: Mapping[str, xr.Dataset],
                covered: Iterable[str]) -> PublicMasks:
    """The masks a scope covering the territory codes ``covered`` reads under: ``public``
    (the vintage's public masks, over its ``datasets``: frequency → full dataset) with the
    covered rows shown wherever that gives back no cell hidden outside them (module
    docstring). ``figures["scope"]``: the counts shown and those kept public."""
    covered = set(covered)
    rows = {f: np.array([c in covered for c in codes], dtype=bool)
            for f, codes in public.codes.items()}
    hidden = {f: dict(names) for f, names in public.hidden.items()}
    out = PublicMasks(public.threshold, public.codes, public.dates, hidden,
                      {"scope": {"shown": [], "kept_public": []}})
    if not any(r.any() for r in rows.values()):
        return out
    from features.disclosure import is_protected

    counts: dict[str, list[str]] = {}
    derived: list[tuple[str, str]] = []
    for f, names in public.hidden.items():
        for name, mask in names.items():
            if not mask[rows[f]].any():
                continue
            attrs = datasets[f][name].attrs if name in datasets[f] else {}
            if is_protected(name, attrs):
                counts.setdefault(name, []).append(f)
            else:
                derived.append((f, name))
    failed = False
    for name, frequencies in sorted(counts.items()):
        if _safe_to_show(public, datasets, name, frequencies, rows):
            for f in frequencies:
                hidden[f][name] = public.hidden[f][name] & ~rows[f][:, None]
            out.figures["scope"]["shown"].append(name)
        else:
            failed = True
            out.figures["scope"]["kept_public"].append(name)
            log.warning("disclosure: showing %s to the scope %s would give back cells hidden "
                        "outside it: kept as the public reads it", name, sorted(covered)[:5])
    if not failed:
        for f, name in derived:
            hidden[f][name] = public.hidden[f][name] & ~rows[f][:, None]
    return out


def _safe_to_show(public: PublicMasks, datasets: Mapping[str, xr.Dataset], name: str,
                  frequencies: list[str], rows: Mapping[str, np.ndarray]) -> bool:
    """Whether showing the covered rows of count ``name`` leaves every other hidden cell
    protected (no equation breaking the rule, no cell determined by the audit)."""
    from features.disclosure import CountCells, _count_equations, hierarchy_children

    cells = CountCells.of(datasets, name, frequencies)
    children = {f: hierarchy_children(public.codes[f], datasets[f]["territory_level"].values,
                                      datasets[f]["territory_parent"].values,
                                      datasets[f]["territory_group"].values
                                      if "territory_group" in datasets[f].coords else None)
                for f in frequencies}
    eqs = _count_equations(public, datasets, children, cells)
    mask = np.concatenate([public.hidden[f][name].ravel() for f in frequencies])
    scope = np.concatenate([np.broadcast_to(rows[f][:, None], cells.arrays[f].shape).ravel()
                            for f in frequencies])
    known = _known(public, cells, frequencies)
    rest = mask & ~scope & ~known
    values = np.nan_to_num(cells.values)
    if violations(values, rest, eqs, public.threshold).any():
        return False
    return not determined(rest, eqs).any()


def _known(public: PublicMasks, cells, frequencies: list[str]) -> np.ndarray:
    """Cells the public knows with their current value (shown by this vintage or an earlier
    one: the vintage's record), as one vector over the count's cells."""
    parts = []
    for f in frequencies:
        value = cells.arrays[f]
        record = None if public.record is None else public.record.known.get(f, {}).get(
            cells.name)
        if record is None or record.shape != value.shape:
            parts.append(np.zeros(value.size, dtype=bool))
            continue
        with np.errstate(invalid="ignore"):
            same = np.abs(record - value) <= 1e-9 * np.maximum(1.0, np.abs(value))
        parts.append((same & ~np.isnan(value)).ravel())
    return np.concatenate(parts)
