"""Statistical disclosure control: which cells of a cube vintage the public never sees.

Hiding single small counts is not enough: a région is the exact sum of its départements, France
of its régions and collectivités, a week of its seven days, so ``région − visible départements``
or ``week − visible days`` gives a hidden count back. This package computes, once per vintage,
the *public mask* of every indicator (True = hidden from the public), by the rule of
``docs/DISCLOSURE.md``:

1. **Primary suppression.** A count of persons ``v`` with ``0 < v < threshold`` is hidden
   (zero identifies nobody and stays). Counts are the indicators with ``count = 1`` except the
   public facts of :data:`PUBLIC_FACTS` (bed capacities, populations).
2. **Dependent model outputs.** Beds occupied rebuilt from flows (``hosp``/``icu`` with
   ``*_origin = 2``) are exact functions of the territory's own flows: a rebuilt cell is hidden
   wherever one of its input flows is (:func:`rebuilt_dependency`).
3. **Secondary (complementary) suppression**, to a fixpoint, over every additive equation the
   public can see (:mod:`features.disclosure.equations`): parent = Σ children at each date
   (France → régions and collectivités → départements; from communes, EPCI = Σ its communes
   and département = Σ its communes, both trees at once; an EPCI is never summed into
   anything), week = Σ its 7 days (weekly flows are built from daily ones), weekly stock = the
   Saturday's daily stock.
   In every equation either nothing is hidden, or at least two members are *and*, when the
   total is visible, the sum of the hidden members (total − visible members) is not in
   ``(0, threshold)``. An equation that breaks this gets its smallest positive visible member
   hidden (or its total, when no member can be), until none does (:func:`complete`).
4. **Linear audit.** The per-equation rule does not see chains of equations (a hidden cell
   that is a "bridge" between two groups of hidden cells is still determined), so every
   connected block of hidden cells is checked exactly: a hidden cell is determined when its
   unit vector lies in the row space of the equations restricted to the hidden cells
   (:func:`determined`); for each such cell one more visible cell of its equations is hidden,
   and steps 3–4 repeat (:func:`protect`).
5. **Across vintages** (:class:`PublicRecord`, :func:`store_masks`): a count an earlier vintage
   showed with the value it has now is known to the public (a value in steps 3–4, never a
   complement); a count the previous vintage hid with the value it has now stays hidden.
6. **Derived values** that let a hidden count be backed out are hidden wherever a cell they
   are computed from is (:func:`derived_masks`): 7-day incidence and positivity (7-day sums of
   cases and tests), vaccination coverage, variant shares, the screening-based incidence
   estimate, R(t), growth rate and doubling time (7-day sums and the 20-day infectiousness of
   their basis series); rates whose implied count (rate × population) is in
   ``(0, threshold)`` are hidden too.

Everything is numpy/scipy on whole arrays; no Flask. The service memoises the masks per vintage
(:func:`store_masks`) and keeps each vintage's record beside the cube.

Here: the masks of a vintage (:func:`public_masks`, one count at a time) and their per-process
cache; :mod:`~features.disclosure.equations` (the equations), :mod:`~features.disclosure.audit`
(steps 3–4 on a vector of cells), :mod:`~features.disclosure.derived` (steps 2 and 6),
:mod:`~features.disclosure.record` (the masks and the public record),
:mod:`~features.disclosure.forecasts` (a forecast's public quantiles).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits

from features.disclosure.audit import (
    MAX_BLOCK,
    MAX_ROUNDS,
    complete,
    determined,
    determined_unknowns,
    protect,
    violations,
)
from features.disclosure.derived import REBUILT, cell_values, derived_masks, rebuilt_dependency
from features.disclosure.equations import (
    COMMUNE_PARENT_LEVELS,
    SUMMED_LEVELS,
    Equations,
    _stack,
    hierarchy_children,
    hierarchy_equations,
    time_equations,
    week_days,
)
from features.disclosure.forecasts import forecast_public
from features.disclosure.record import PublicMasks, PublicRecord

#: The public names of the package (``_CACHE``, ``_PREVIOUS`` and ``_stack``: the tests reset the
#: per-process caches and build equations through them).
__all__ = [
    "COMMUNE_PARENT_LEVELS", "MAX_BLOCK", "MAX_ROUNDS", "PUBLIC_FACTS", "REBUILT",
    "SUMMED_LEVELS", "_CACHE", "_PREVIOUS",
    "Equations", "PublicMasks", "PublicRecord", "_stack", "complete", "derived_masks",
    "determined", "determined_unknowns", "forecast_public", "hierarchy_children",
    "hierarchy_equations", "is_protected", "protect", "public_masks", "rebuilt_dependency",
    "record_path", "store_masks", "time_equations", "vintage_masks", "violations", "week_days",
]

log = logging.getLogger(__name__)

#: Counts that are facts about equipment or the whole population, not about patients: the
#: DREES bed capacities (SAE, published per establishment) and INSEE populations. Never
#: suppressed, identically in /data, /alerts, /risk and the dashboard.
PUBLIC_FACTS = frozenset({
    "icu_beds_adult", "icu_beds_paediatric", "intensive_care_beds", "critical_care_beds",
    "continuous_care_beds", "population_estimate", "population_65_plus",
})


def is_protected(name: str, attrs: Mapping) -> bool:
    """A count of persons: small values are hidden from the public."""
    return bool(int(attrs.get("count", 0) or 0)) and name not in PUBLIC_FACTS \
        and not name.endswith("_origin")


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two arrays of counts hold the same value (False where either is NaN)."""
    with np.errstate(invalid="ignore"):
        return np.abs(a - b) <= 1e-9 * np.maximum(1.0, np.abs(a))


def public_masks(datasets: Mapping[str, xr.Dataset], threshold: float,
                 previous: PublicRecord | None = None) -> PublicMasks:
    """The public mask of every suppressed indicator of a vintage (see the module docstring).

    ``datasets``: frequency → the vintage's full dataset (never an ``as_of`` cut: the mask of
    a cell must not depend on which dates a request reads). ``previous``: what the public
    knows from the vintages served before (:class:`PublicRecord`): a count shown there with the
    value it has now is known, never chosen as a complement and no unknown in the audit. The
    result's ``record`` is what the public knows once this vintage is served too."""
    codes = {f: [str(c) for c in ds["territory"].values] for f, ds in datasets.items()}
    dates = {f: pd.DatetimeIndex(ds["date"].values) for f, ds in datasets.items()}
    out = PublicMasks(float(threshold), codes, dates, {f: {} for f in datasets})
    children = {f: hierarchy_children(codes[f], ds["territory_level"].values,
                                      ds["territory_parent"].values,
                                      ds["territory_group"].values
                                      if "territory_group" in ds.coords else None)
                for f, ds in datasets.items()}
    names: dict[str, list[str]] = {}
    for f, ds in datasets.items():
        for name, var in ds.data_vars.items():
            if is_protected(str(name), var.attrs):
                names.setdefault(str(name), []).append(f)
    # Flows before the stocks rebuilt from them.
    order = sorted(names, key=lambda n: (n in REBUILT, n))
    record = PublicRecord(codes, dates, {f: {} for f in datasets}, {f: {} for f in datasets})
    for name in order:
        _protect_count(out, datasets, children, name, names[name], threshold, previous,
                       record)
    derived_masks(out, datasets, threshold)
    out.record = record
    return out


@dataclass
class CountCells:
    """The cells of one count over every frequency it has, as one flat vector: frequency after
    frequency, each (territory, date) block row-major. ``values``: persons (NaN: absent);
    ``arrays[f]``: frequency ``f``'s (territory, date) array; ``offsets[f]``: where its block
    starts in the vector."""

    name: str
    arrays: dict[str, np.ndarray]
    offsets: dict[str, int]
    values: np.ndarray

    @classmethod
    def of(cls, datasets: Mapping[str, xr.Dataset], name: str, frequencies: list[str]
           ) -> CountCells:
        arrays = {f: cell_values(datasets[f], name) for f in frequencies}
        offsets, start = {}, 0
        for f in frequencies:
            offsets[f] = start
            start += arrays[f].size
        return cls(name, arrays, offsets, np.concatenate([arrays[f].ravel() for f in frequencies]))

    def block(self, flat: np.ndarray, frequency: str) -> np.ndarray:
        """Frequency ``frequency``'s (territory, date) block of a vector over the cells."""
        o, shape = self.offsets[frequency], self.arrays[frequency].shape
        return flat[o:o + self.arrays[frequency].size].reshape(shape)


def _protect_count(out: PublicMasks, datasets: Mapping[str, xr.Dataset],
                   children: Mapping[str, dict], name: str, frequencies: list[str],
                   threshold: float, previous: PublicRecord | None = None,
                   record: PublicRecord | None = None) -> None:
    """Steps 1–5 for the count ``name`` over its ``frequencies`` at once: its public masks and
    figures into ``out``, what the public knows of it once they are served into ``record``."""
    cells = CountCells.of(datasets, name, frequencies)
    values = cells.values
    present = ~np.isnan(values)
    primary = present & (values > 0) & (values < threshold)
    dependent = _dependent_cells(out, datasets, cells)
    eqs = _count_equations(out, datasets, children, cells)
    # A cell the previous vintages showed with the value it has now is known to the public:
    # a value, not an unknown, and never a complement. A cell the previous vintage hid with
    # the value it has now stays hidden: showing it now could give back, through that
    # vintage's own equations (whose other cells may have been revised since), a cell it hid.
    before = {kind: np.concatenate([
        (previous.aligned(kind, f, name, out.codes[f], out.dates[f]) if previous is not None
         else np.full(cells.arrays[f].shape, np.nan)).ravel() for f in frequencies])
        for kind in ("known", "hidden")}
    known = present & _same(before["known"], values)
    kept = present & _same(before["hidden"], values) & ~known
    hidden, figures = _proved_or_hidden(name, values, primary | dependent | kept, eqs,
                                        threshold, known if previous is not None else None)
    figures["known"] = int(known.sum())
    figures["kept"] = int((kept & ~primary & ~dependent).sum())
    figures["known_hidden"] = int((known & hidden).sum())
    for f in frequencies:
        mask = cells.block(hidden, f)
        out.hidden[f][name] = mask
        if record is not None:
            _record_count(record, cells, f, mask, before, figures.get("fail_closed", False))
        p = cells.block(primary, f).ravel()
        d = cells.block(dependent, f).ravel() & ~p
        out.figures.setdefault(f, {})[name] = {
            "cells": int(cells.block(present, f).sum()), "primary": int(p.sum()),
            "dependent": int(d.sum()), "secondary": int((mask.ravel() & ~p & ~d).sum()),
            "hidden": int(mask.sum())}
    out.figures.setdefault("equations", {})[name] = {
        "count": eqs.size, **{k: int((eqs.kind == k).sum()) for k in ("hierarchy", "week",
                                                                      "saturday")},
        **figures}


def _dependent_cells(out: PublicMasks, datasets: Mapping[str, xr.Dataset], cells: CountCells
                     ) -> np.ndarray:
    """Step 2: the positive daily cells of a rebuilt stock that depend on a hidden flow (the
    flows' masks are in ``out`` already)."""
    values = cells.values
    dependent = np.zeros(len(values), dtype=bool)
    if cells.name in REBUILT and "daily" in cells.arrays:
        dep = rebuilt_dependency(datasets["daily"], cells.name, out)
        if dep is not None:
            o = cells.offsets["daily"]
            dependent[o:o + dep.size] = dep.ravel() & (values[o:o + dep.size] > 0)
    return dependent


def _count_equations(out: PublicMasks, datasets: Mapping[str, xr.Dataset],
                     children: Mapping[str, dict], cells: CountCells) -> Equations:
    """Every equation the public can see over the count's cells: the hierarchy at each
    frequency, and week = its days (flows) or its Saturday (stocks)."""
    arrays, offsets = cells.arrays, cells.offsets
    parts = []
    for f in arrays:
        parts += hierarchy_equations(arrays[f], children[f], offsets[f])
    if "daily" in arrays and "weekly" in arrays:
        stock = bool(int(datasets["daily"][cells.name].attrs.get("stock", 0) or 0))
        w_pos = pd.Index(out.codes["weekly"]).get_indexer(out.codes["daily"])
        d_rows = np.flatnonzero(w_pos >= 0)
        days = week_days(out.dates["daily"], out.dates["weekly"])
        parts += time_equations(arrays["daily"], arrays["weekly"], d_rows, w_pos[d_rows], days,
                                offsets["daily"], offsets["weekly"], stock)
    return _stack(parts, len(cells.values))


def _proved_or_hidden(name: str, values: np.ndarray, primary: np.ndarray, eqs: Equations,
                      threshold: float, known: np.ndarray | None) -> tuple[np.ndarray, dict]:
    """Steps 3–4 (:func:`protect`) and their figures; every present cell hidden (fail
    closed, ``figures["fail_closed"]``) when the protection cannot be proved."""
    present = ~np.isnan(values)
    try:
        hidden, figures = protect(values, primary, eqs, threshold, known)
    except ValueError as exc:  # a block too large to audit exactly
        hidden, figures = present.copy(), {"error": str(exc)}
    if figures.get("error") or figures["determined"] or figures["unresolved"]:
        # Fail closed: an indicator whose protection could not be proved is not published
        # to the public at all (every cell hidden) rather than published leaky.
        log.error("disclosure: %s could not be protected (%s): every public cell hidden",
                  name, figures)
        hidden = present.copy()
        figures["fail_closed"] = True
    return hidden, figures


def _record_count(record: PublicRecord, cells: CountCells, frequency: str, mask: np.ndarray,
                  before: dict[str, np.ndarray], fail_closed: bool) -> None:
    """What the public knows of the count at ``frequency`` once ``mask`` is served: the
    values shown (else what it knew before), and the values hidden to keep hidden."""
    value = cells.arrays[frequency]
    shown = ~np.isnan(value) & ~mask
    name = cells.name
    record.known[frequency][name] = np.where(shown, value,
                                             cells.block(before["known"], frequency))
    # A vintage that hid the whole indicator (fail closed) showed nothing: the cells an
    # earlier one hid stay the ones to keep hidden.
    record.hidden[frequency][name] = np.where(~np.isnan(value) & mask, value, np.nan) \
        if not fail_closed else cells.block(before["hidden"], frequency)


_CACHE: OrderedDict[tuple, PublicMasks] = OrderedDict()
_CACHE_LOCK = threading.RLock()
FREQUENCIES = ("daily", "weekly", "quarterly", "yearly")
#: Vintage id → the id of the vintage served before it (None: the first), once looked up.
_PREVIOUS: dict[Hashable, Hashable | None] = {}


def vintage_masks(vintage: Hashable, open_dataset: Callable[[str], xr.Dataset],
                  threshold: float, previous: Hashable | None = None,
                  previous_record: Callable[[], PublicRecord] | None = None,
                  folder: Path | None = None) -> PublicMasks:
    """:func:`public_masks` of one vintage, computed once per process and threshold
    (vintages are immutable). ``vintage``: a key naming it (its id);
    ``open_dataset(frequency)``: its full dataset (KeyError when it has none);
    ``previous``/``previous_record()``: the id of the vintage served before it and what the
    public knew after it (see :func:`store_masks`); ``folder``: where the vintage's own
    record is written (``<vintage>-t<threshold>.npz``) for the next vintage."""
    key = (vintage, float(threshold), previous)
    with _CACHE_LOCK:
        masks = _CACHE.get(key)
        if masks is not None:
            _CACHE.move_to_end(key)
            return masks
        prior = previous_record() if previous_record is not None else None
        datasets = {}
        for frequency in FREQUENCIES:
            try:
                datasets[frequency] = open_dataset(frequency)
            except KeyError:
                continue
        # Many small dense solves: BLAS threads only slow them down on a busy machine.
        with threadpool_limits(limits=1, user_api="blas"):
            masks = public_masks(datasets, threshold, prior)
        if folder is not None:
            _save_record(masks, record_path(folder, vintage, threshold))
        _CACHE[key] = masks
        while len(_CACHE) > 4:
            _CACHE.popitem(last=False)
        return masks


def record_path(folder: Path, vintage: Hashable, threshold: float) -> Path:
    return Path(folder) / f"{vintage}-t{float(threshold):g}.npz"


def _save_record(masks: PublicMasks, path: Path) -> None:
    if masks.record is None or masks.record_file is not None:
        return
    try:
        masks.record.save(path)
        masks.record_file = path
    except OSError as exc:  # kept in memory: the next vintage reads it from there
        log.warning("disclosure: record %s not written (%s)", path, exc)
        masks.record_file = path  # tried once per process


def store_masks(store, vintage_id: str, threshold: float) -> PublicMasks:
    """:func:`vintage_masks` of a vintage of a :class:`features.store.CubeStore`, protected
    against the vintages served before it: each vintage's record (what the public knows once
    it is served) is kept in ``<cube>/disclosure/``; a missing one is computed from its
    vintage, oldest first (vintages are immutable, so the chain is computed once)."""
    folder = Path(store.root) / "disclosure"
    with _CACHE_LOCK:
        if vintage_id not in _PREVIOUS:
            order = [str(v["id"]) for v in sorted(store.list_vintages(),
                                                  key=lambda v: v["issued_at"])]
            if vintage_id not in order:
                raise LookupError(f"no vintage '{vintage_id}'")
            for before, after in zip([None, *order[:-1]], order, strict=True):
                _PREVIOUS.setdefault(after, before)
        masks = _CACHE.get((vintage_id, float(threshold), _PREVIOUS[vintage_id]))
        if masks is not None:  # computed by vintage_masks alone: its record written once
            if masks.record_file is None:
                _save_record(masks, record_path(folder, vintage_id, threshold))
            return masks
        chain = [vintage_id]
        while (prev := _PREVIOUS.get(chain[-1])) is not None:
            if (prev, float(threshold), _PREVIOUS.get(prev)) in _CACHE \
                    or record_path(folder, prev, threshold).exists():
                break
            chain.append(prev)
        for vid in reversed(chain):
            masks = _store_vintage_masks(store, vid, threshold, folder)
        return masks


def _store_vintage_masks(store, vintage_id: str, threshold: float, folder: Path
                         ) -> PublicMasks:
    prev = _PREVIOUS.get(vintage_id)

    def previous_record() -> PublicRecord:
        masks = _CACHE.get((prev, float(threshold), _PREVIOUS.get(prev)))
        if masks is not None and masks.record is not None:
            return masks.record
        record = PublicRecord.load(record_path(folder, prev, threshold))
        if record is None:  # unreadable: computed again from its vintage
            record = _store_vintage_masks(store, prev, threshold, folder).record
        return record

    return vintage_masks(vintage_id, lambda f: store.open(f, vintage_id=vintage_id),
                         threshold, prev, previous_record if prev is not None else None,
                         folder)
