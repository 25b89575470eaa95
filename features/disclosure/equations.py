"""Additive equations the public can see over a flat vector of cells: parent = Σ children at a
date (:func:`hierarchy_equations`: région = Σ départements, France = Σ départements and
collectivités, and, from communes, EPCI = Σ its communes and département = Σ its communes),
week = Σ its 7 days or its Saturday (:func:`time_equations`).

Only an equation that holds on the published values gives anything back, so only those are
built. Cells are numbered frequency by frequency, territory-major: cell ``offset + row × n_dates
+ column``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

#: Territory levels whose counts add up (child → parent). EPCI are groupings of communes that
#: are never summed into anything.
SUMMED_LEVELS = ("country", "region", "department", "collectivity")
#: Levels a commune's count is summed into (``docs/CUBE_CONTRACT.md``): its département or
#: collectivité (``territory_parent``) and its EPCI (``territory_group``). Communes are not
#: served to the public, but their cells are audited as if they were (a scoped token reads its
#: own communes): a mask safe when they are visible is safe when they are not.
COMMUNE_PARENT_LEVELS = ("department", "collectivity", "epci")


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


def hierarchy_children(codes: Iterable[str], levels: Iterable[str], parents: Iterable[str],
                       groups: Iterable[str] | None = None) -> dict[int, np.ndarray]:
    """Row of each parent → rows of its direct children: among :data:`SUMMED_LEVELS` (the
    administrative tree above communes), and each commune under its département or collectivité
    (``parents``) and under its EPCI (``groups``: a commune's EPCI, ``''`` for none; the
    cube's ``territory_group``). A commune is the child of both: two equations hold its
    cell, and an EPCI spanning two départements links their equations."""
    codes, levels, parents = list(codes), list(levels), list(parents)
    groups = [""] * len(codes) if groups is None else [str(g) for g in groups]
    row = {c: i for i, c in enumerate(codes)}
    out: dict[int, list[int]] = {}
    for i, (level, parent) in enumerate(zip(levels, parents, strict=True)):
        if level == "commune":
            for code in dict.fromkeys((parent, groups[i])):
                p = row.get(code) if code else None
                if p is not None and levels[p] in COMMUNE_PARENT_LEVELS:
                    out.setdefault(p, []).append(i)
            continue
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
