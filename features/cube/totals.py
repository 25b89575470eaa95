"""Totals of régions and France computed from their children where none is published (step 3
of :mod:`features.cube`), with how complete each is (:mod:`features.cube.coverage`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from threadpoolctl import threadpool_limits

from features.cube.coverage import TotalsCoverage
from features.cube.frame import BASE_LEVELS, Frame
from features.territories import FRANCE, Territories, ancestor_at

#: Levels whose values Vigie may compute by summing (or averaging) their children.
TOTAL_LEVELS = ("region", "country")


def registry_children(territories: Territories, level: str) -> dict[str, list[str]]:
    """Parent code at ``level`` → the départements and collectivités of the registry under it."""
    table = territories.table
    parent_of, level_of = table["parent"].to_dict(), table["level"].to_dict()
    out: dict[str, list[str]] = {}
    for code in table.index[table["level"].isin(BASE_LEVELS).to_numpy()]:
        parent = ancestor_at(code, level, parent_of, level_of)
        if parent:
            out.setdefault(parent, []).append(code)
    return out


def _member_matrix(frame: Frame, base: np.ndarray, members: list[list[str]]) -> np.ndarray:
    """0/1 matrix (parent × base row) of the members present in the frame."""
    position = {frame.codes[row]: j for j, row in enumerate(base)}
    matrix = np.zeros((len(members), len(base)))
    for i, codes in enumerate(members):
        for code in codes:
            j = position.get(code)
            if j is not None:
                matrix[i, j] = 1.0
    return matrix


def _record_coverage(frame: Frame, name: str, parents: np.ndarray, members: list[list[str]],
                     count: np.ndarray) -> None:
    """Note, for the computed ``parents`` rows, the dates their total is absent for want of
    children (``count``: children reporting, parent × date)."""
    coverage = frame.coverage.setdefault(name, TotalsCoverage())
    values = frame.arrays[name]
    labels = frame.date_labels
    for i, row in enumerate(parents):
        code, need = frame.codes[row], len(members[i])
        coverage.children[code] = need
        coverage.members[code] = members[i]
        gaps = np.flatnonzero(np.isnan(values[row]) & (count[i] > 0) & (count[i] < need))
        if len(gaps):
            coverage.incomplete[code] = {labels[j]: int(count[i, j]) for j in gaps}
        else:
            coverage.incomplete.pop(code, None)


@threadpool_limits.wrap(limits=1, user_api="blas")
def aggregate_hierarchy(frame: Frame) -> None:
    """Fill régions and France from their children where they have no published value.

    A total is computed on a date only when all its children report the indicator that date:
    every département of the registry under it (one missing from the cube counts as not
    reporting) and, for France, each collectivité that reports the indicator on some date of
    the vintage (national sources cover collectivités unevenly: SPF's hospital data has
    Saint-Martin, not Saint-Pierre-et-Miquelon; a collectivité a source never publishes is taken
    as outside that source). A city indicator reported by one département thus never becomes
    its région's or France's value. EPCI and communes are never summed. Coverage (n of m) of
    every computed total goes to ``frame.coverage`` (the variable's ``computed_totals``).

    BLAS runs single-threaded here: these products are small (régions × départements × days),
    and OpenBLAS threads made each one 100× slower on a busy 2-core machine (18 ms vs 0.2 ms).
    """
    base = frame.rows_at(BASE_LEVELS)
    population = frame.meta["population"].to_numpy(dtype=float)[base]
    levels = frame.meta["level"].to_numpy()
    is_department = levels[base] == "department"
    children = {level: registry_children(frame.territories, level) for level in TOTAL_LEVELS}
    table = frame.territories.table
    departments = set(table.index[(table["level"] == "department").to_numpy()])
    for name, spec in frame.specs.items():
        arr = frame.arrays[name]
        if spec.aggregation == "national":
            if FRANCE in frame.index:
                arr[:] = arr[frame.index[FRANCE]][None, :]
            continue
        if spec.aggregation not in ("sum", "population_mean") or name.endswith("_origin"):
            continue
        x = arr[base]
        observed = ~np.isnan(x)
        if not observed.any():
            continue
        reporting = {frame.codes[row] for row in base[observed.any(axis=1) & ~is_department]}
        filled = np.nan_to_num(x)
        for level in TOTAL_LEVELS:
            parents = frame.rows_at([level])
            parents = parents[np.isnan(arr[parents]).all(axis=1)]  # published rows win
            if not len(parents):
                continue
            members = [[c for c in children[level].get(frame.codes[p], [])
                        if c in departments or c in reporting] for p in parents]
            m = _member_matrix(frame, base, members)
            need = np.array([len(codes) for codes in members], dtype=float)[:, None]
            count = m @ observed
            complete = (count == need) & (need > 0)
            if spec.aggregation == "sum":
                value = np.where(complete, m @ filled, np.nan)
            else:
                w = m * np.nan_to_num(population)[None, :]
                weight = w @ observed
                with np.errstate(invalid="ignore", divide="ignore"):
                    value = np.where(complete & (weight > 0), (w @ filled) / weight, np.nan)
            arr[parents] = value
            _record_coverage(frame, name, parents, members, count)


def weekly_coverage(frame: Frame, daily: Frame, names: Iterable[str]) -> None:
    """Coverage of the weekly values of daily indicators: a parent's week is complete when each
    child the daily total needs has its own weekly value (all 7 days, or the Saturday)."""
    base = frame.rows_at(BASE_LEVELS)
    for name in names:
        source = daily.coverage.get(name)
        if source is None or name not in frame.arrays:
            continue
        parents = np.array([frame.index[c] for c in source.children if c in frame.index])
        if not len(parents):
            continue
        members = [source.members[frame.codes[p]] for p in parents]
        observed = ~np.isnan(frame.arrays[name][base])
        _record_coverage(frame, name, parents, members,
                         _member_matrix(frame, base, members) @ observed)
