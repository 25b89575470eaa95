"""Totals computed from children where none is published (step 3 of :mod:`features.cube`), with
how complete each is (:mod:`features.cube.coverage`), in two steps:

a. **from communes** (:func:`commune_totals`): a commune's value is summed into its EPCI (the
   groupement tree) and into its département or collectivité (the administrative tree), each
   straight from the communes (never EPCI → département nor the reverse: an EPCI may span
   départements). The children are the communes that report the indicator; a total covering
   only some of the territory's communes is a *partial sum*, served with its coverage (communes
   and share of population) and never used as the territory's total;
b. **régions and France** from départements and collectivités (:func:`aggregate_hierarchy`),
   only on dates when all of them report; a partial sum of communes counts as not reporting.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from threadpoolctl import threadpool_limits

from features.cube.coverage import TotalsCoverage, is_partial
from features.cube.frame import BASE_LEVELS, Frame
from features.territories import COMMUNE_TOTAL_LEVELS, FRANCE, Territories, ancestor_at

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


def _summable(spec, name: str) -> bool:
    return spec.aggregation in ("sum", "population_mean") and not name.endswith("_origin")


def _combine(spec, m: np.ndarray, x: np.ndarray, observed: np.ndarray, need: np.ndarray,
             population: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each parent's sum (counts) or population-weighted mean (rates) of its members (rows of
    the 0/1 matrix ``m`` over the rows of ``x``), only on dates when all ``need`` of them
    report; and how many reported (parent × date)."""
    filled = np.where(observed, x, 0.0)
    count = m @ observed
    complete = (count == need) & (need > 0)
    if spec.aggregation == "sum":
        return np.where(complete, m @ filled, np.nan), count
    w = m * np.nan_to_num(population)[None, :]
    weight = w @ observed
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(complete & (weight > 0), (w @ filled) / weight, np.nan), count


def _commune_parents(frame: Frame, communes: np.ndarray) -> dict[int, list[int]]:
    """Frame row of each territory its communes are summed into (its département or
    collectivité, its EPCI) → the frame rows of its communes."""
    meta = frame.meta
    parent = meta["parent"].to_numpy(dtype=object)
    group = meta["group"].to_numpy(dtype=object) if "group" in meta \
        else np.full(len(meta), "", dtype=object)
    levels = meta["level"].to_numpy()
    out: dict[int, list[int]] = {}
    for row in communes:
        for code in (parent[row], group[row]):
            p = frame.index.get(code) if code else None
            if p is not None and levels[p] in COMMUNE_TOTAL_LEVELS:
                out.setdefault(p, []).append(int(row))
    return out


def _territory_communes(frame: Frame, parents: list[int]) -> dict[int, tuple[int, float]]:
    """Parent row → (its communes in the registry, their population), for the coverage."""
    table = frame.territories.table
    is_commune = table["level"].eq("commune").to_numpy()
    parent = table["parent"].to_numpy(dtype=object)[is_commune]
    group = table["group"].to_numpy(dtype=object)[is_commune] if "group" in table \
        else np.full(int(is_commune.sum()), "", dtype=object)
    population = np.nan_to_num(table["population"].to_numpy(dtype=float)[is_commune])
    out = {}
    for p in parents:
        code = frame.codes[p]
        mine = (group == code) if frame.meta["level"].iat[p] == "epci" else (parent == code)
        out[p] = (int(mine.sum()), float(population[mine].sum()))
    return out


def commune_totals(frame: Frame) -> dict[str, np.ndarray]:
    """Step 3a: fill each département, collectivité and EPCI that has no published value of an
    indicator from its communes in the frame (sum of counts, population-weighted mean of
    rates).

    The children of a territory are its communes that report the indicator on some date (as
    for France's collectivités: a commune that never sends it is outside that source); the
    total exists on the dates when all of them report. Its coverage goes to
    ``frame.coverage[name].communes``: the territory's communes in the registry, the reporting
    ones, their population and its share of the territory's. Returns, per indicator, the frame
    rows whose value is a **partial sum** (share < 1): step 3b treats them as not reporting,
    so no région or France total is ever made of them.
    """
    communes = frame.rows_at(["commune"])
    partial: dict[str, np.ndarray] = {}
    if not len(communes):
        return partial
    parents_of = _commune_parents(frame, communes)
    if not parents_of:
        return partial
    territory = _territory_communes(frame, list(parents_of))
    population = frame.meta["population"].to_numpy(dtype=float)
    own_population = np.nan_to_num(population[communes])
    for name, spec in frame.specs.items():
        if not _summable(spec, name):
            continue
        arr = frame.arrays[name]
        observed = ~np.isnan(arr[communes])
        reports = set(communes[observed.any(axis=1)].tolist())
        if not reports:
            continue
        parents = np.array([p for p, rows in parents_of.items()
                            if np.isnan(arr[p]).all() and reports.intersection(rows)])
        if not len(parents):
            continue
        members = [[frame.codes[r] for r in parents_of[p] if r in reports] for p in parents]
        m = _member_matrix(frame, communes, members)
        need = np.array([len(codes) for codes in members], dtype=float)[:, None]
        value, count = _combine(spec, m, arr[communes], observed, need, own_population)
        arr[parents] = value
        _record_coverage(frame, name, parents, members, count)
        coverage = frame.coverage[name]
        flags = np.zeros(len(frame.codes), dtype=bool)
        for i, p in enumerate(parents):
            covered = float(m[i] @ own_population)
            whole = population[p]
            share = covered / whole if whole > 0 else None
            coverage.communes[frame.codes[p]] = {
                "members": territory[p][0], "reporting": len(members[i]),
                "population": covered,
                "population_share": None if share is None else round(share, 6)}
            flags[p] = is_partial(coverage.communes[frame.codes[p]])
        partial[name] = flags
    return partial


@threadpool_limits.wrap(limits=1, user_api="blas")
def aggregate_hierarchy(frame: Frame) -> None:
    """Fill régions and France from their children where they have no published value.

    A total is computed on a date only when all its children report the indicator that date:
    every département of the registry under it (one missing from the cube counts as not
    reporting) and, for France, each collectivité that reports the indicator on some date of
    the vintage (national sources cover collectivités unevenly: SPF's hospital data has
    Saint-Martin, not Saint-Pierre-et-Miquelon; a collectivité a source never publishes is taken
    as outside that source). A city indicator reported by one département thus never becomes
    its région's or France's value. Communes are summed first into their départements,
    collectivités and EPCIs (:func:`commune_totals`); a partial sum of communes counts here as
    not reporting. EPCI are never summed. Coverage (n of m) of every computed total goes to
    ``frame.coverage`` (the variable's ``computed_totals``).

    BLAS runs single-threaded here: these products are small (régions × départements × days),
    and OpenBLAS threads made each one 100× slower on a busy 2-core machine (18 ms vs 0.2 ms).
    """
    partial = commune_totals(frame)
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
        if not _summable(spec, name):
            continue
        x = arr[base]
        observed = ~np.isnan(x)
        if not observed.any():
            continue
        reporting = {frame.codes[row] for row in base[observed.any(axis=1) & ~is_department]}
        if name in partial:  # a partial sum of communes is not the territory's value
            observed &= ~partial[name][base][:, None]
        for level in TOTAL_LEVELS:
            parents = frame.rows_at([level])
            parents = parents[np.isnan(arr[parents]).all(axis=1)]  # published rows win
            if not len(parents):
                continue
            members = [[c for c in children[level].get(frame.codes[p], [])
                        if c in departments or c in reporting] for p in parents]
            m = _member_matrix(frame, base, members)
            need = np.array([len(codes) for codes in members], dtype=float)[:, None]
            value, count = _combine(spec, m, x, observed, need, population)
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
        communes = frame.rows_at(["commune"])
        rows = [communes if frame.codes[p] in source.communes else base for p in parents]
        count = np.vstack([_member_matrix(frame, r, [codes]) @ ~np.isnan(frame.arrays[name][r])
                           for r, codes in zip(rows, members, strict=True)])
        _record_coverage(frame, name, parents, members, count)
        frame.coverage[name].communes.update(
            {c: source.communes[c] for c in map(frame.codes.__getitem__, parents)
             if c in source.communes})
