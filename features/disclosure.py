"""Statistical disclosure control: which cells of a cube vintage the public never sees.

Hiding single small counts is not enough: a région is the exact sum of its départements, France
of its régions and collectivités, a week of its seven days, so ``région − visible départements``
or ``week − visible days`` gives a hidden count back. This module computes, once per vintage,
the *public mask* of every indicator (True = hidden from the public), by the rule of
``docs/DISCLOSURE.md``:

1. **Primary suppression.** A count of persons ``v`` with ``0 < v < threshold`` is hidden
   (zero identifies nobody and stays). Counts are the indicators with ``count = 1`` except the
   public facts of :data:`PUBLIC_FACTS` (bed capacities, populations).
2. **Dependent model outputs.** Beds occupied rebuilt from flows (``hosp``/``icu`` with
   ``*_origin = 2``) are exact functions of the territory's own flows: a rebuilt cell is hidden
   wherever one of its input flows is (:func:`rebuilt_dependency`).
3. **Secondary (complementary) suppression**, to a fixpoint, over every additive equation the
   public can see (:func:`equations`): parent = Σ children at each date (France → régions and
   collectivités → départements; EPCI are never summed), week = Σ its 7 days (weekly flows are
   built from daily ones), weekly stock = the Saturday's daily stock. In every equation either
   nothing is hidden, or at least two members are *and*, when the total is visible, the sum of
   the hidden members (total − visible members) is not in ``(0, threshold)``. An equation that
   breaks this gets its smallest positive visible member hidden (or its total, when no member
   can be), until none does (:func:`complete`).
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
"""

from __future__ import annotations

import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
from scipy.sparse.csgraph import connected_components
from threadpoolctl import threadpool_limits

from features.epidemic import trailing_sum
from features.risk import region_rows
from features.storage.atomic import atomic_path

#: Counts that are facts about equipment or the whole population, not about patients: the
#: DREES bed capacities (SAE, published per establishment) and INSEE populations. Never
#: suppressed, identically in /data, /alerts, /risk and the dashboard.
log = logging.getLogger(__name__)

PUBLIC_FACTS = frozenset({
    "icu_beds_adult", "icu_beds_paediatric", "intensive_care_beds", "critical_care_beds",
    "continuous_care_beds", "population_estimate", "population_65_plus",
})
#: Territory levels whose counts add up (child → parent). EPCI are groupings of communes that
#: are never summed into anything; communes are not public.
SUMMED_LEVELS = ("country", "region", "department", "collectivity")
#: Stocks rebuilt from flows (features.occupancy): stock → (origin variable, input flows,
#: whether the flow accounting anchored on published days is used).
REBUILT: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "hosp": ("hosp_origin", ("inc_hosp", "inc_discharge", "inc_death"), True),
    "icu": ("icu_origin", ("inc_icu",), False),
}
#: Days of past admissions a rebuilt stock depends on (length of the survival kernel).
REBUILT_KERNEL_DAYS = 120
#: Days of the basis series behind R(t) and the growth rate on a day: the 7-day window and the
#: 20-day generation interval before it (features.epidemic).
EPIDEMIC_WINDOW_DAYS = 7 + 20
EPIDEMIC_OUTPUTS = ("rt", "rt_lower", "rt_upper", "growth_rate", "doubling_time")
EPIDEMIC_BASIS = {1: "inc_cases", 2: "inc_hosp"}
#: Rates whose value × population / scale is a count of persons.
IMPLIED_COUNTS = {"incidence_rate_7d": 1e5, "vaccination_coverage_dose1": 100.0}
#: Safety cap on the complete/audit rounds (each round hides at least one more cell).
MAX_ROUNDS = 200
#: Largest block of hidden cells checked exactly (dense SVD); larger ones are refused.
MAX_BLOCK = 4000
_EPS = 1e-9


def is_protected(name: str, attrs: Mapping) -> bool:
    """A count of persons: small values are hidden from the public."""
    return bool(int(attrs.get("count", 0) or 0)) and name not in PUBLIC_FACTS \
        and not name.endswith("_origin")


# ---------------------------------------------------------------------------- equations
@dataclass
class Equations:
    """Additive equations ``cell[total] = Σ cell[members]`` over a flat vector of cells.

    ``members`` is a CSR matrix (equation × cell) of ones; ``total`` the total's cell."""

    total: np.ndarray
    members: sp.csr_matrix
    kind: np.ndarray  # short label per equation: "hierarchy", "week", "saturday"
    _signed: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.total)

    def signed(self) -> sp.csr_matrix:
        """The equations as rows of ``+total − members`` (a total is never its own member)."""
        if self._signed is not None:
            return self._signed
        n = self.members.shape[1]
        tot = sp.csr_matrix((np.ones(self.size), (np.arange(self.size), self.total)),
                            shape=(self.size, n))
        self._signed = (tot - self.members).tocsr()
        return self._signed


def _stack(parts: list[tuple[np.ndarray, np.ndarray, str]], n_cells: int) -> Equations:
    """``parts``: (totals (E,), members (E, k), kind) blocks → one :class:`Equations`."""
    totals, rows, cols, kinds = [], [], [], []
    start = 0
    for total, members, kind in parts:
        if not len(total):
            continue
        e, k = members.shape
        totals.append(total)
        rows.append(np.repeat(np.arange(start, start + e), k))
        cols.append(members.ravel())
        kinds.append(np.full(e, kind, dtype=object))
        start += e
    if not totals:
        return Equations(np.zeros(0, dtype=np.int64), sp.csr_matrix((0, n_cells)),
                         np.zeros(0, dtype=object))
    rows_, cols_ = np.concatenate(rows), np.concatenate(cols)
    matrix = sp.csr_matrix((np.ones(len(rows_)), (rows_, cols_)), shape=(start, n_cells))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return Equations(np.concatenate(totals).astype(np.int64), matrix, np.concatenate(kinds))


def hierarchy_children(codes: Iterable[str], levels: Iterable[str], parents: Iterable[str]
                       ) -> dict[int, np.ndarray]:
    """Row of each parent → rows of its direct children, among :data:`SUMMED_LEVELS`."""
    codes, levels, parents = list(codes), list(levels), list(parents)
    row = {c: i for i, c in enumerate(codes)}
    out: dict[int, list[int]] = {}
    for i, (level, parent) in enumerate(zip(levels, parents, strict=True)):
        if level not in SUMMED_LEVELS or level == "country":
            continue
        p = row.get(parent)
        if p is None or levels[p] not in SUMMED_LEVELS:
            continue
        out.setdefault(p, []).append(i)
    return {p: np.array(sorted(c)) for p, c in out.items()}


def hierarchy_equations(values: np.ndarray, children: Mapping[int, np.ndarray], offset: int
                        ) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """parent = Σ children at every date where the parent and every child that reports the
    indicator (has a value on some date) have a value, and the sum holds. ``values``
    (territory, date)."""
    n_dates = values.shape[1]
    present = ~np.isnan(values)
    parts = []
    for p, kids in children.items():
        kids = kids[present[kids].any(axis=1)]
        if not len(kids):
            continue
        cols = np.flatnonzero(present[p] & present[kids].all(axis=0))
        cols = cols[_holds(values[p, cols], values[kids][:, cols].sum(axis=0))]
        if not len(cols):
            continue
        total = offset + p * n_dates + cols
        members = offset + kids[None, :] * n_dates + cols[:, None]
        parts.append((total, members, "hierarchy"))
    return parts


def _holds(total: np.ndarray, summed: np.ndarray) -> np.ndarray:
    """Where a published total equals the sum of its members: only an equation that holds
    gives anything back (a published total that differs from the sum of its parts, or the
    parts of an inconsistent source, is no equation)."""
    return np.abs(total - summed) <= 1e-6 * np.maximum(1.0, np.abs(total))


def week_days(daily_dates: pd.DatetimeIndex, weekly_dates: pd.DatetimeIndex) -> np.ndarray:
    """(week, 7) positions in ``daily_dates`` of each week's Sunday..Saturday (-1: absent)."""
    days = weekly_dates.values[:, None] - np.arange(6, -1, -1)[None, :] * np.timedelta64(1, "D")
    pos = daily_dates.get_indexer(pd.DatetimeIndex(days.ravel()))
    return pos.reshape(len(weekly_dates), 7)


def time_equations(daily: np.ndarray, weekly: np.ndarray, d_rows: np.ndarray,
                   w_rows: np.ndarray, days: np.ndarray, d_off: int, w_off: int, stock: bool
                   ) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Week = Σ its 7 days (flows) or week = its Saturday (stocks), per territory.

    ``d_rows``/``w_rows``: matching rows of the daily and weekly arrays (same territory)."""
    nd, nw = daily.shape[1], weekly.shape[1]
    full = (days >= 0).all(axis=1)
    parts = []
    for dr, wr in zip(d_rows, w_rows, strict=True):
        if stock:
            sat = days[:, 6]
            ok = (sat >= 0) & ~np.isnan(weekly[wr])
            ok[ok] &= ~np.isnan(daily[dr, sat[ok]])
            w = np.flatnonzero(ok)
            w = w[_holds(weekly[wr, w], daily[dr, sat[w]])]
            members = (d_off + dr * nd + sat[w])[:, None]
            kind = "saturday"
        else:
            ok = full & ~np.isnan(weekly[wr])
            ok[ok] &= ~np.isnan(daily[dr][days[ok]]).any(axis=1)
            w = np.flatnonzero(ok)
            w = w[_holds(weekly[wr, w], daily[dr][days[w]].sum(axis=1))]
            members = d_off + dr * nd + days[w]
            kind = "week"
        if len(w):
            parts.append((w_off + wr * nw + w, members, kind))
    return parts


# ---------------------------------------------------------------------------- the rule
def violations(values: np.ndarray, hidden: np.ndarray, eqs: Equations, threshold: float,
               known: np.ndarray | None = None) -> np.ndarray:
    """Equations that break the rule: exactly one member hidden (total included), or a visible
    total whose hidden members add up to something in ``(0, threshold)``. ``known``: cells the
    public already knows (published by a previous vintage with the same value): hidden or not,
    they count as visible."""
    if not eqs.size:
        return np.zeros(0, dtype=bool)
    if known is not None:
        hidden = hidden & ~known
    m = eqs.members
    hidden_members = m @ hidden.astype(float)
    total_hidden = hidden[eqs.total]
    count = hidden_members + total_hidden
    visible_sum = m @ np.where(hidden, 0.0, values)
    recovered = values[eqs.total] - visible_sum
    small = ~total_hidden & (hidden_members >= 1) & (recovered > _EPS) \
        & (recovered < threshold - _EPS)
    return (count == 1) | small


def _pick(values: np.ndarray, hidden: np.ndarray, eqs: Equations, rows: np.ndarray,
          known: np.ndarray | None = None) -> np.ndarray:
    """For each equation of ``rows``: its smallest positive visible member (lowest cell on
    ties), else its total when visible and positive, else (with ``known``, an equation nothing
    positive can fix) a visible zero member or total; -1 when none exists. Cells the public
    already knows (``known``) are never picked: hiding them hides nothing."""
    blocked = hidden if known is None else hidden | known
    out = _smallest(values, blocked, eqs, rows, positive=True)
    total = eqs.total[rows]
    fallback = (out < 0) & ~blocked[total] & (values[total] > 0)
    out[fallback] = total[fallback]
    if known is not None and (out < 0).any():
        # Only where the previous vintages' published cells leave nothing positive to hide.
        rest = np.flatnonzero(out < 0)
        zero = _smallest(values, blocked, eqs, rows[rest], positive=False)
        total = eqs.total[rows[rest]]
        zero = np.where((zero < 0) & ~blocked[total], total, zero)
        out[rest] = zero
    return out


def _smallest(values: np.ndarray, blocked: np.ndarray, eqs: Equations, rows: np.ndarray,
              positive: bool) -> np.ndarray:
    """Per equation of ``rows``, its smallest member not ``blocked`` (lowest cell on ties), -1
    when none; positive members only when ``positive``, else zero ones."""
    sub = eqs.members[rows]
    out = np.full(len(rows), -1, dtype=np.int64)
    lengths = np.diff(sub.indptr)
    cells = sub.indices
    ok = ~blocked[cells] & ((values[cells] > 0) if positive else (values[cells] == 0))
    cost = np.where(ok, values[cells], np.inf)
    if len(cells):
        starts = sub.indptr[:-1]
        safe = np.minimum(starts, len(cells) - 1)
        best = np.minimum.reduceat(cost, safe)
        best[lengths == 0] = np.inf
        is_best = cost == np.repeat(best, lengths)
        pos = np.where(is_best, np.arange(len(cells)), len(cells))
        first = np.minimum.reduceat(pos, safe)
        found = np.isfinite(best)
        out[found] = cells[first[found]]
    return out


def complete(values: np.ndarray, hidden: np.ndarray, eqs: Equations, threshold: float,
             known: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Secondary suppression to a fixpoint of :func:`violations` (returns the new mask and
    the number of rounds). Equations no visible positive cell can fix are left (reported by
    :func:`violations` afterwards). ``known``: see :func:`_pick`."""
    hidden = hidden.copy()
    values = np.nan_to_num(values)
    for rounds in range(1, MAX_ROUNDS + 1):
        bad = np.flatnonzero(violations(values, hidden, eqs, threshold, known))
        picks = _pick(values, hidden, eqs, bad, known) if len(bad) \
            else np.zeros(0, dtype=np.int64)
        picks = picks[picks >= 0]
        if not len(picks):
            return hidden, rounds
        hidden[picks] = True
    return hidden, MAX_ROUNDS


def determined(hidden: np.ndarray, eqs: Equations, focus: np.ndarray | None = None,
               tol: float = 1e-10) -> np.ndarray:
    """Hidden cells the equations determine exactly (whatever the visible values are).

    The unknowns are the hidden cells; each equation restricted to them is a row (see
    :func:`determined_unknowns`). With ``focus`` (a cell mask), only the blocks holding a focus
    cell are checked (the others are reported not determined)."""
    out = np.zeros(len(hidden), dtype=bool)
    if not eqs.size or not hidden.any():
        return out
    cells = np.flatnonzero(hidden)
    found = determined_unknowns(eqs.signed()[:, cells],
                                None if focus is None else focus[cells], tol)
    out[cells[found]] = True
    return out


@threadpool_limits.wrap(limits=1, user_api="blas")
def determined_unknowns(matrix: sp.spmatrix, focus: np.ndarray | None = None,
                        tol: float = 1e-10) -> np.ndarray:
    """Unknowns (columns) of the linear system ``matrix @ x = known`` that it determines.

    An unknown is determined iff its unit vector lies in the row space, i.e. iff it is zero
    in every null-space vector. Solved per connected block of unknowns (rows sharing an
    unknown), by SVD; blocks of up to 64 unknowns are padded and solved in stacks. ``focus``
    (one flag per unknown): only the blocks holding one are checked. ``tol``: largest squared
    norm of the part of a determined unknown's unit vector outside the row space. BLAS runs
    single-threaded: thousands of small solves, which its threads only slow down."""
    a = sp.csr_matrix(matrix, dtype=float)
    a.eliminate_zeros()
    n_unknowns = a.shape[1]
    out = _propagate(a)
    if out.any():  # what one equation gives away is known: the rest is solved without it
        a = a[:, np.flatnonzero(~out)].tocsr()
        rest = determined_unknowns(a, None if focus is None else np.asarray(focus)[~out], tol)
        out[np.flatnonzero(~out)[rest]] = True
        return out
    a = a[np.diff(a.indptr) > 0].tocoo()
    if not a.nnz:
        return out
    cells = np.arange(n_unknowns)
    n_rows, n_cells = a.shape
    graph = sp.coo_matrix((np.ones(a.nnz), (a.row, a.col + n_rows)),
                          shape=(n_rows + n_cells, n_rows + n_cells))
    n_comp, label = connected_components(graph, directed=False)
    row_label, cell_label = label[:n_rows], label[n_rows:]
    wanted = np.ones(n_comp, dtype=bool)
    if focus is not None:
        wanted[:] = False
        wanted[cell_label[np.asarray(focus, dtype=bool)]] = True
    # Local positions of rows and cells inside their block.
    r_order = np.lexsort((np.arange(n_rows), row_label))
    c_order = np.lexsort((np.arange(n_cells), cell_label))
    r_start = np.searchsorted(row_label[r_order], np.arange(n_comp + 1))
    c_start = np.searchsorted(cell_label[c_order], np.arange(n_comp + 1))
    r_local = np.empty(n_rows, dtype=np.int64)
    r_local[r_order] = np.arange(n_rows) - r_start[row_label[r_order]]
    c_local = np.empty(n_cells, dtype=np.int64)
    c_local[c_order] = np.arange(n_cells) - c_start[cell_label[c_order]]
    comp = cell_label[a.col]
    n_r, n_c = np.diff(r_start), np.diff(c_start)
    keep = wanted[comp] & (n_r[comp] > 0)
    single = wanted & (n_r > 0) & (n_c == 1)  # alone in its equations: each gives it away
    out[cells[c_order[c_start[:-1][single]]]] = True
    # Blocks of up to 64 cells are padded to a power of two and solved in stacks.
    pad_r = np.maximum(2, 2 ** np.ceil(np.log2(np.maximum(n_r, 1))).astype(int))
    pad_c = np.maximum(2, 2 ** np.ceil(np.log2(np.maximum(n_c, 1))).astype(int))
    todo = wanted & (n_r > 0) & (n_c > 1)
    nz_all = np.flatnonzero(keep)
    nz_comp = comp[nz_all]
    order = np.argsort(nz_comp, kind="stable")
    nz_all, nz_comp = nz_all[order], nz_comp[order]
    nz_start = np.searchsorted(nz_comp, np.arange(n_comp + 1))
    small = todo & (n_c <= 64)
    for pr, pc in sorted(set(zip(pad_r[small].tolist(), pad_c[small].tolist(),
                                 strict=True))):
        in_group = small & (pad_r == pr) & (pad_c == pc)
        group = np.flatnonzero(in_group)
        position = np.full(n_comp, -1)
        position[group] = np.arange(len(group))
        nz = nz_all[in_group[nz_comp]]
        stack = np.zeros((len(group), pr, pc))
        stack[position[comp[nz]], r_local[a.row[nz]], c_local[a.col[nz]]] = a.data[nz]
        found = _determined_stack(stack, tol)
        mine = in_group[cell_label]
        out[cells[mine]] = found[position[cell_label[mine]], c_local[mine]]
    too_big = todo & (n_c > MAX_BLOCK)
    if too_big.any():
        raise ValueError(f"{int(too_big.sum())} blocks of more than {MAX_BLOCK} hidden cells "
                         f"(largest {int(n_c.max())}): too large to check exactly")
    for k in np.flatnonzero(todo & (n_c > 64)):
        members = c_order[c_start[k]:c_start[k + 1]]
        nz = nz_all[nz_start[k]:nz_start[k + 1]]
        block = np.zeros((n_r[k], n_c[k]))
        block[r_local[a.row[nz]], c_local[a.col[nz]]] = a.data[nz]
        out[cells[members[_determined_stack(block[None], tol)[0]]]] = True
    return out


def _propagate(a: sp.csr_matrix, rounds: int = 50) -> np.ndarray:
    """Unknowns alone in an equation, then alone once those are known, and so on."""
    ones = abs(a).sign().tocsr()
    known = np.zeros(a.shape[1], dtype=bool)
    for _ in range(rounds):
        left = ones @ (~known).astype(float)
        rows = np.flatnonzero(left == 1)
        if not len(rows):
            break
        sub = ones[rows].multiply((~known).astype(float)[None, :]).tocsr()
        sub.eliminate_zeros()
        known[sub.indices] = True
    return known


def _determined_stack(stack: np.ndarray, tol: float) -> np.ndarray:
    """(k, columns): whether each column's unit vector is in its matrix's row space (zero
    rows and columns of padding change nothing): its projection on the row space, spanned by
    the right singular vectors of non-zero singular values, has norm 1."""
    _, s, vt = np.linalg.svd(stack, full_matrices=False)
    top = s[:, :1] if s.shape[1] else np.zeros((len(stack), 1))
    rank = (s > max(stack.shape[1:]) * np.finfo(float).eps * top).sum(axis=1)
    used = np.arange(vt.shape[1])[None, :] < rank[:, None]
    inside = np.einsum("kr,krc->kc", used.astype(float), vt ** 2)
    return 1.0 - inside < tol


def protect(values: np.ndarray, primary: np.ndarray, eqs: Equations, threshold: float,
            known: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """:func:`complete`, then the :func:`determined` audit, repeated until no hidden cell is
    determined. Returns the mask and figures (rounds, cells still determined: 0 expected).

    ``known``: cells the public already knows with their current value (published by a
    previous vintage): they are values, not unknowns, in the rule and in the audit, and are
    never chosen as complements."""
    values = np.nan_to_num(values)
    known = np.zeros(len(values), dtype=bool) if known is None else known
    hidden, rounds = complete(values, primary, eqs, threshold, known)
    audits = 0
    stuck = determined(hidden & ~known, eqs)
    while stuck.any() and audits < MAX_ROUNDS:
        audits += 1
        extra = _unlock(values, hidden, eqs, np.flatnonzero(stuck), known)
        if not len(extra):
            break
        before = hidden.copy()
        hidden[extra] = True
        hidden, more = complete(values, hidden, eqs, threshold, known)
        rounds += more
        stuck = determined(hidden & ~known, eqs, focus=(hidden & ~before) | stuck)
    return hidden, {"rounds": rounds, "audits": audits, "determined": int(stuck.sum()),
                    "unresolved": int(violations(values, hidden, eqs, threshold, known).sum())}


def _unlock(values: np.ndarray, hidden: np.ndarray, eqs: Equations, stuck: np.ndarray,
            known: np.ndarray | None = None) -> np.ndarray:
    """One more cell per determined cell ``i``: the equations give ``x_i`` as a combination
    ``Σ α_k (equation k)``; a visible cell with a non-zero net coefficient in that combination
    breaks it once hidden. The smallest positive such cell is chosen (a zero one when no
    positive one is left), never one of ``known``."""
    known = np.zeros(len(hidden), dtype=bool) if known is None else known
    signed = eqs.signed()
    cells = np.flatnonzero(hidden & ~known)
    restricted = signed[:, cells].tocsc()
    by_row = restricted.tocsr()
    column = {c: k for k, c in enumerate(cells)}
    picks = []
    for cell in stuck:
        rows = _component_rows(restricted, by_row, column[cell])
        block = restricted[rows].toarray()
        target = np.zeros(block.shape[1])
        target[column[cell]] = 1.0
        alpha = np.linalg.lstsq(block.T, target, rcond=None)[0]
        net = signed[rows].T @ alpha
        free = (np.abs(net) > 1e-7) & ~hidden & ~known
        candidates = np.flatnonzero(free & (values > 0))
        if not len(candidates):
            candidates = np.flatnonzero(free & (values == 0))
        if len(candidates):
            picks.append(candidates[np.argmin(values[candidates])])
    return np.unique(np.array(picks, dtype=np.int64))


def _component_rows(restricted: sp.csc_matrix, by_row: sp.csr_matrix, start: int
                    ) -> np.ndarray:
    """Equations reachable from hidden cell ``start`` through hidden cells (BFS)."""
    seen_cells, seen_rows = {start}, set()
    frontier = [start]
    while frontier:
        rows = np.unique(np.concatenate(
            [restricted.indices[restricted.indptr[c]:restricted.indptr[c + 1]]
             for c in frontier]))
        new_rows = [r for r in rows.tolist() if r not in seen_rows]
        seen_rows.update(new_rows)
        if not new_rows:
            break
        nxt = np.unique(np.concatenate([by_row.indices[by_row.indptr[r]:by_row.indptr[r + 1]]
                                        for r in new_rows]))
        frontier = [c for c in nxt.tolist() if c not in seen_cells]
        seen_cells.update(frontier)
    return np.array(sorted(seen_rows), dtype=np.int64)


# ---------------------------------------------------------------------------- the cube
@dataclass
class PublicMasks:
    """Per frequency and indicator, the (territory, date) mask of cells hidden from the public,
    in the order of the vintage's datasets; ``figures`` says how many and why."""

    threshold: float
    codes: dict[str, list[str]]
    dates: dict[str, pd.DatetimeIndex]
    hidden: dict[str, dict[str, np.ndarray]]
    figures: dict[str, dict] = field(default_factory=dict)
    #: What the public knows once this vintage is published (see :class:`PublicRecord`),
    #: and the file it was written to (None: not tried yet).
    record: PublicRecord | None = field(default=None, repr=False)
    record_file: Path | None = field(default=None, repr=False)

    def has(self, frequency: str, name: str) -> bool:
        return name in self.hidden.get(frequency, {})

    def select(self, frequency: str, name: str, codes: Iterable[str], dates: Iterable
               ) -> np.ndarray | None:
        """The mask of ``codes`` × ``dates`` (any subset of the vintage's), or None when the
        indicator is never suppressed. Codes or dates the vintage lacks are not hidden."""
        mask = self.hidden.get(frequency, {}).get(name)
        if mask is None:
            return None
        codes = list(codes)
        rows = pd.Index(self.codes[frequency]).get_indexer(codes)
        cols = self.dates[frequency].get_indexer(pd.DatetimeIndex(list(dates)))
        out = np.zeros((len(codes), len(cols)), dtype=bool)
        ok_r, ok_c = rows >= 0, cols >= 0
        out[np.ix_(ok_r, ok_c)] = mask[np.ix_(rows[ok_r], cols[ok_c])]
        return out

    def cell(self, frequency: str, name: str, code: str, date) -> bool:
        sel = self.select(frequency, name, [code], [pd.Timestamp(date)])
        return bool(sel is not None and sel[0, 0])


@dataclass
class PublicRecord:
    """What the public knows of the counts after a vintage was served, to protect the next
    vintage against the combination of both (an attacker keeps yesterday's answers, or reads
    them through ``as_of``). Per frequency and protected count, on the vintage's codes × dates:

    * ``known``: the last value the public was shown for the cell, in this vintage or an
      earlier one (NaN: never shown);
    * ``hidden``: the value of the cells this vintage hides (NaN elsewhere), which the next
      vintage keeps hidden while their value is unchanged (showing one could give back,
      through this vintage's equations, a count it hid).

    Written once per vintage (:meth:`save`, ``<cube>/disclosure/<id>-t<threshold>.npz``)."""

    codes: dict[str, list[str]]
    dates: dict[str, pd.DatetimeIndex]
    known: dict[str, dict[str, np.ndarray]]
    hidden: dict[str, dict[str, np.ndarray]]

    def aligned(self, kind: str, frequency: str, name: str, codes: list[str],
                dates: pd.DatetimeIndex) -> np.ndarray:
        """``known`` or ``hidden`` of ``name`` on ``codes`` × ``dates`` (NaN where absent)."""
        out = np.full((len(codes), len(dates)), np.nan)
        arr = getattr(self, kind).get(frequency, {}).get(name)
        if arr is None:
            return out
        rows = pd.Index(self.codes[frequency]).get_indexer(codes)
        cols = self.dates[frequency].get_indexer(dates)
        ok_r, ok_c = rows >= 0, cols >= 0
        out[np.ix_(ok_r, ok_c)] = arr[np.ix_(rows[ok_r], cols[ok_c])]
        return out

    def save(self, path: Path) -> None:
        """Written atomically (a temporary file renamed into place), compressed."""
        arrays: dict[str, np.ndarray] = {}
        for f in self.codes:
            arrays[f"codes|{f}"] = np.array(self.codes[f], dtype=str)
            arrays[f"dates|{f}"] = self.dates[f].values.astype("datetime64[ns]").astype(np.int64)
        for kind in ("known", "hidden"):
            for f, by_name in getattr(self, kind).items():
                for name, arr in by_name.items():
                    arrays[f"{kind}|{f}|{name}"] = arr
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> PublicRecord | None:
        """The record at ``path``, None when there is none or it cannot be read."""
        try:
            with np.load(path, allow_pickle=False) as z:
                files = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("disclosure: unreadable record %s (%s): recomputed", path, exc)
            return None
        codes, dates = {}, {}
        known: dict[str, dict[str, np.ndarray]] = {}
        hidden: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in files.items():
            parts = key.split("|")
            if parts[0] == "codes":
                codes[parts[1]] = [str(c) for c in arr]
            elif parts[0] == "dates":
                dates[parts[1]] = pd.DatetimeIndex(arr.astype("datetime64[ns]"))
            elif parts[0] in ("known", "hidden"):
                (known if parts[0] == "known" else hidden).setdefault(parts[1], {})[
                    parts[2]] = arr
        return cls(codes, dates, known, hidden)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two arrays of counts hold the same value (False where either is NaN)."""
    with np.errstate(invalid="ignore"):
        return np.abs(a - b) <= 1e-9 * np.maximum(1.0, np.abs(a))


def _arrays(ds: xr.Dataset, name: str) -> np.ndarray:
    return ds[name].transpose("territory", "date").values.astype(float)


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
                                      ds["territory_parent"].values)
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


def _protect_count(out: PublicMasks, datasets: Mapping[str, xr.Dataset],
                   children: Mapping[str, dict], name: str, frequencies: list[str],
                   threshold: float, previous: PublicRecord | None = None,
                   record: PublicRecord | None = None) -> None:
    arrays = {f: _arrays(datasets[f], name) for f in frequencies}
    offsets, start = {}, 0
    for f in frequencies:
        offsets[f] = start
        start += arrays[f].size
    values = np.concatenate([arrays[f].ravel() for f in frequencies])
    present = ~np.isnan(values)
    primary = present & (values > 0) & (values < threshold)
    dependent = np.zeros(len(values), dtype=bool)
    if name in REBUILT and "daily" in arrays:
        dep = rebuilt_dependency(datasets["daily"], name, out)
        if dep is not None:
            o = offsets["daily"]
            dependent[o:o + dep.size] = dep.ravel() & (values[o:o + dep.size] > 0)
    parts = []
    for f in frequencies:
        parts += hierarchy_equations(arrays[f], children[f], offsets[f])
    if "daily" in arrays and "weekly" in arrays:
        stock = bool(int(datasets["daily"][name].attrs.get("stock", 0) or 0))
        w_pos = pd.Index(out.codes["weekly"]).get_indexer(out.codes["daily"])
        d_rows = np.flatnonzero(w_pos >= 0)
        days = week_days(out.dates["daily"], out.dates["weekly"])
        parts += time_equations(arrays["daily"], arrays["weekly"], d_rows, w_pos[d_rows], days,
                                offsets["daily"], offsets["weekly"], stock)
    eqs = _stack(parts, len(values))
    # A cell the previous vintages showed with the value it has now is known to the public:
    # a value, not an unknown, and never a complement. A cell the previous vintage hid with
    # the value it has now stays hidden: showing it now could give back, through that
    # vintage's own equations (whose other cells may have been revised since), a cell it hid.
    before = {kind: np.concatenate([
        (previous.aligned(kind, f, name, out.codes[f], out.dates[f]) if previous is not None
         else np.full(arrays[f].shape, np.nan)).ravel() for f in frequencies])
        for kind in ("known", "hidden")}
    known = present & _same(before["known"], values)
    kept = present & _same(before["hidden"], values) & ~known
    try:
        hidden, figures = protect(values, primary | dependent | kept, eqs, threshold,
                                  known if previous is not None else None)
    except ValueError as exc:  # a block too large to audit exactly
        hidden, figures = present.copy(), {"error": str(exc)}
    if figures.get("error") or figures["determined"] or figures["unresolved"]:
        # Fail closed: an indicator whose protection could not be proved is not published
        # to the public at all (every cell hidden) rather than published leaky.
        log.error("disclosure: %s could not be protected (%s): every public cell hidden",
                  name, figures)
        hidden = present.copy()
        figures["fail_closed"] = True
    figures["known"] = int(known.sum())
    figures["kept"] = int((kept & ~primary & ~dependent).sum())
    figures["known_hidden"] = int((known & hidden).sum())
    for f in frequencies:
        o, shape = offsets[f], arrays[f].shape
        mask = hidden[o:o + arrays[f].size].reshape(shape)
        out.hidden[f][name] = mask
        if record is not None:
            value = arrays[f]
            shown = ~np.isnan(value) & ~mask
            record.known[f][name] = np.where(
                shown, value, before["known"][o:o + arrays[f].size].reshape(shape))
            # A vintage that hid the whole indicator (fail closed) showed nothing: the
            # cells an earlier one hid stay the ones to keep hidden.
            record.hidden[f][name] = np.where(~np.isnan(value) & mask, value, np.nan) \
                if not figures.get("fail_closed") \
                else before["hidden"][o:o + arrays[f].size].reshape(shape)
        p = primary[o:o + arrays[f].size]
        d = dependent[o:o + arrays[f].size] & ~p
        out.figures.setdefault(f, {})[name] = {
            "cells": int(present[o:o + arrays[f].size].sum()), "primary": int(p.sum()),
            "dependent": int(d.sum()), "secondary": int((mask.ravel() & ~p & ~d).sum()),
            "hidden": int(mask.sum())}
    out.figures.setdefault("equations", {})[name] = {
        "count": eqs.size, **{k: int((eqs.kind == k).sum()) for k in ("hierarchy", "week",
                                                                      "saturday")},
        **figures}


def _any_in_window(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``mask[r, lo[r, t]..hi[r, t]].any()`` for every cell (bounds clipped, inclusive)."""
    n = mask.shape[1]
    csum = np.concatenate([np.zeros((mask.shape[0], 1)), np.cumsum(mask, axis=1)], axis=1)
    lo = np.clip(lo, 0, n)
    hi = np.clip(hi + 1, 0, n)
    rows = np.arange(mask.shape[0])[:, None]
    return (csum[rows, np.maximum(hi, lo)] - csum[rows, lo]) > 0


def _trailing_any(mask: np.ndarray, days: int) -> np.ndarray:
    t = np.arange(mask.shape[1])[None, :].repeat(mask.shape[0], axis=0)
    return _any_in_window(mask, t - days + 1, t)


def rebuilt_dependency(daily: xr.Dataset, name: str, masks: PublicMasks) -> np.ndarray | None:
    """Rebuilt cells (``<name>_origin`` = 2) one of whose input flows is hidden: over the
    survival kernel (the :data:`REBUILT_KERNEL_DAYS` days up to the day) and, for the flow
    accounting, every day from the previous published stock to the next one."""
    origin_name, flows, accounting = REBUILT[name]
    if origin_name not in daily:
        return None
    origin = daily[origin_name].transpose("territory", "date").values
    hidden = np.zeros(origin.shape, dtype=bool)
    for flow in flows:
        mask = masks.hidden["daily"].get(flow)
        if mask is not None:
            hidden |= mask
    n = origin.shape[1]
    t = np.arange(n)[None, :].repeat(origin.shape[0], axis=0)
    lo = t - REBUILT_KERNEL_DAYS + 1
    hi = t.copy()
    if accounting:
        published = origin == 1
        prev = np.maximum.accumulate(np.where(published, t, -1), axis=1)
        nxt = np.minimum.accumulate(np.where(published, t, n)[:, ::-1], axis=1)[:, ::-1]
        lo = np.minimum(lo, prev + 1)
        hi = np.maximum(hi, np.minimum(nxt, n - 1))
    return (origin == 2) & _any_in_window(hidden, lo, hi)


# ---------------------------------------------------------------------------- derived values
def derived_masks(out: PublicMasks, datasets: Mapping[str, xr.Dataset], threshold: float
                  ) -> None:
    """Masks of the values computed from counts (see the module docstring, step 6), daily,
    and their weekly copies (a weekly stock is its Saturday's value)."""
    if "daily" not in datasets:
        return
    ds = datasets["daily"]
    counts = out.hidden["daily"]
    shape = (len(out.codes["daily"]), len(out.dates["daily"]))
    derived: dict[str, np.ndarray] = {}

    def hidden_of(name: str) -> np.ndarray:
        return counts.get(name, np.zeros(shape, dtype=bool))

    def small_sum7(name: str) -> np.ndarray:
        if name not in ds:
            return np.zeros(shape, dtype=bool)
        s = trailing_sum(_arrays(ds, name), 7)
        return (s > _EPS) & (s < threshold - _EPS)

    cases_window = _trailing_any(hidden_of("inc_cases"), 7) | small_sum7("inc_cases")
    tests_window = _trailing_any(hidden_of("inc_tests"), 7) | small_sum7("inc_tests")
    if "incidence_rate_7d" in ds:
        derived["incidence_rate_7d"] = cases_window
    if "positivity_rate_7d" in ds:
        derived["positivity_rate_7d"] = cases_window | tests_window
    if "vaccination_coverage_dose1" in ds:
        derived["vaccination_coverage_dose1"] = hidden_of("vaccinated_dose1")
    for name in ds.data_vars:
        name = str(name)
        if name.startswith("variant_share_"):
            m = name[len("variant_share_"):]
            derived[name] = hidden_of(f"screened_{m}_present") | hidden_of(f"screened_{m}_absent")
    if "incidence_rate_7d_estimated" in ds:
        # Each territory's région row (France has none: its estimate is not built from one).
        region = region_rows(ds, [str(c) for c in ds["territory"].values])
        region[ds["territory_level"].values == "country"] = -1
        own = hidden_of("screened_positive_tests")
        reg = cases_window | hidden_of("screened_positive_tests")
        via_region = np.where((region >= 0)[:, None], reg[np.maximum(region, 0)], False)
        derived["incidence_rate_7d_estimated"] = own | via_region
    if "epidemic_basis" in ds:
        basis = ds["epidemic_basis"].transpose("territory", "date").values
        epi = np.zeros(shape, dtype=bool)
        for code, series in EPIDEMIC_BASIS.items():
            epi |= (basis == code) & _trailing_any(hidden_of(series), EPIDEMIC_WINDOW_DAYS)
        for name in EPIDEMIC_OUTPUTS:
            if name in ds:
                derived[name] = epi
    population = ds["population"].values.astype(float) if "population" in ds.coords else None
    if population is not None:
        for name, scale in IMPLIED_COUNTS.items():
            if name in ds:
                implied = _arrays(ds, name) * population[:, None] / scale
                small = (implied > _EPS) & (implied < threshold - 0.5)
                derived[name] = derived.get(name, np.zeros(shape, dtype=bool)) | small
    for name, mask in derived.items():
        mask = mask & ~np.isnan(_arrays(ds, name))
        out.hidden["daily"][name] = mask
        out.figures.setdefault("daily", {})[name] = {
            "cells": int((~np.isnan(_arrays(ds, name))).sum()), "hidden": int(mask.sum())}
    _weekly_copies(out, datasets, list(derived))


def _weekly_copies(out: PublicMasks, datasets: Mapping[str, xr.Dataset], names: list[str]
                   ) -> None:
    """A weekly stock (Saturday's value) is hidden where its Saturday is."""
    if "weekly" not in datasets:
        return
    weekly = datasets["weekly"]
    days = week_days(out.dates["daily"], out.dates["weekly"])[:, 6]
    d_rows = pd.Index(out.codes["daily"]).get_indexer(out.codes["weekly"])
    for name in names:
        if name not in weekly:
            continue
        values = _arrays(weekly, name)
        mask = np.zeros(values.shape, dtype=bool)
        ok_r, ok_c = d_rows >= 0, days >= 0
        mask[np.ix_(ok_r, ok_c)] = out.hidden["daily"][name][np.ix_(d_rows[ok_r], days[ok_c])]
        mask &= ~np.isnan(values)
        out.hidden["weekly"][name] = mask
        out.figures.setdefault("weekly", {})[name] = {
            "cells": int((~np.isnan(values)).sum()), "hidden": int(mask.sum())}


# ---------------------------------------------------------------------------- forecasts
def forecast_public(quantiles: list[float | None], median: float | None, observed_hidden: bool,
                    threshold: float, count: bool) -> tuple[list[float | None], bool]:
    """The public quantile values of one forecast (location × target date) and whether any
    was hidden. For a count target: everything is hidden when the observation of the same
    cell is hidden (never more precise than the observation) or the median is in
    ``(0, threshold)``; otherwise each quantile value in ``(0, threshold)`` is hidden."""
    if not count:
        return list(quantiles), False
    if observed_hidden or (median is not None and 0 < median < threshold):
        return [None] * len(quantiles), True
    shown = [None if v is not None and 0 < v < threshold else v for v in quantiles]
    return shown, any(a is None and b is not None for a, b in zip(shown, quantiles,
                                                                  strict=True))
