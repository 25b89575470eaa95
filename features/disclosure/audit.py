"""Secondary suppression and its exact audit over :class:`~features.disclosure.equations.Equations`
(steps 3 and 4 of :mod:`features.disclosure`): hide complements until no equation breaks the
rule (:func:`complete`), then check every connected block of hidden cells exactly
(:func:`determined`) and hide one more cell for each determined one (:func:`protect`).

Values are counts of persons on a flat vector of cells; masks are boolean vectors over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from threadpoolctl import threadpool_limits

from features.disclosure.equations import Equations

#: Safety cap on the complete/audit rounds (each round hides at least one more cell).
MAX_ROUNDS = 200
#: Largest block of hidden cells checked exactly (dense SVD); larger ones are refused.
MAX_BLOCK = 4000
#: Tolerance of a count compared with zero or with the threshold.
EPS = 1e-9


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
    small = ~total_hidden & (hidden_members >= 1) & (recovered > EPS) \
        & (recovered < threshold - EPS)
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
    out = _propagate(a)
    if out.any():  # what one equation gives away is known: the rest is solved without it
        a = a[:, np.flatnonzero(~out)].tocsr()
        rest = determined_unknowns(a, None if focus is None else np.asarray(focus)[~out], tol)
        out[np.flatnonzero(~out)[rest]] = True
        return out
    a = a[np.diff(a.indptr) > 0].tocoo()
    if not a.nnz:
        return out
    blocks = _Blocks.of(a, focus)
    # Alone in its equations: each of them gives it away.
    single = blocks.todo_any & (blocks.n_c == 1)
    out[blocks.c_order[blocks.c_start[:-1][single]]] = True
    _solve_small_blocks(blocks, out, tol)
    too_big = blocks.todo & (blocks.n_c > MAX_BLOCK)
    if too_big.any():
        raise ValueError(f"{int(too_big.sum())} blocks of more than {MAX_BLOCK} hidden cells "
                         f"(largest {int(blocks.n_c.max())}): too large to check exactly")
    _solve_large_blocks(blocks, out, tol)
    return out


#: Blocks of up to this many unknowns are padded to powers of two and solved in stacks.
STACKED_BLOCK = 64


@dataclass
class _Blocks:
    """The connected blocks of a system (unknowns sharing an equation, and those equations),
    each with local row and column positions, and its non-zeros grouped by block.

    ``a``: the system (COO, no empty row); ``cell_label``: block of each unknown;
    ``r_local``/``c_local``: position of each row and unknown inside its block;
    ``c_order``/``c_start``: the unknowns sorted by block and where each block starts;
    ``n_r``/``n_c``: rows and unknowns per block; ``wanted``: blocks to check; ``comp``: block
    of each non-zero; ``nz_all``/``nz_comp``/``nz_start``: the non-zeros of the wanted blocks
    sorted by block, their block, and where each block starts."""

    a: sp.coo_matrix
    cell_label: np.ndarray
    r_local: np.ndarray
    c_local: np.ndarray
    c_order: np.ndarray
    c_start: np.ndarray
    n_r: np.ndarray
    n_c: np.ndarray
    wanted: np.ndarray
    comp: np.ndarray
    nz_all: np.ndarray
    nz_comp: np.ndarray
    nz_start: np.ndarray

    @classmethod
    def of(cls, a: sp.coo_matrix, focus: np.ndarray | None) -> _Blocks:
        n_rows, n_cells = a.shape
        graph = sp.coo_matrix((np.ones(a.nnz), (a.row, a.col + n_rows)),
                              shape=(n_rows + n_cells, n_rows + n_cells))
        n_comp, label = connected_components(graph, directed=False)
        row_label, cell_label = label[:n_rows], label[n_rows:]
        wanted = np.ones(n_comp, dtype=bool)
        if focus is not None:
            wanted[:] = False
            wanted[cell_label[np.asarray(focus, dtype=bool)]] = True
        _, r_start, r_local = _local_positions(row_label, n_comp)
        c_order, c_start, c_local = _local_positions(cell_label, n_comp)
        comp = cell_label[a.col]
        n_r, n_c = np.diff(r_start), np.diff(c_start)
        nz_all = np.flatnonzero(wanted[comp] & (n_r[comp] > 0))
        nz_comp = comp[nz_all]
        order = np.argsort(nz_comp, kind="stable")
        nz_all, nz_comp = nz_all[order], nz_comp[order]
        nz_start = np.searchsorted(nz_comp, np.arange(n_comp + 1))
        return cls(a, cell_label, r_local, c_local, c_order, c_start, n_r, n_c,
                   wanted, comp, nz_all, nz_comp, nz_start)

    @property
    def todo_any(self) -> np.ndarray:
        """Wanted blocks with at least one equation."""
        return self.wanted & (self.n_r > 0)

    @property
    def todo(self) -> np.ndarray:
        """Wanted blocks of two unknowns or more: solved by SVD."""
        return self.todo_any & (self.n_c > 1)


def _local_positions(label: np.ndarray, n_comp: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items sorted by block (stable), where each block starts in that order, and each item's
    position inside its block."""
    n = len(label)
    order = np.lexsort((np.arange(n), label))
    start = np.searchsorted(label[order], np.arange(n_comp + 1))
    local = np.empty(n, dtype=np.int64)
    local[order] = np.arange(n) - start[label[order]]
    return order, start, local


def _solve_small_blocks(b: _Blocks, out: np.ndarray, tol: float) -> None:
    """Blocks of up to :data:`STACKED_BLOCK` unknowns, padded to a power of two (rows and
    columns) and solved in one stack per padded shape; their determined unknowns set in
    ``out``."""
    a = b.a
    pad_r = np.maximum(2, 2 ** np.ceil(np.log2(np.maximum(b.n_r, 1))).astype(int))
    pad_c = np.maximum(2, 2 ** np.ceil(np.log2(np.maximum(b.n_c, 1))).astype(int))
    small = b.todo & (b.n_c <= STACKED_BLOCK)
    for pr, pc in sorted(set(zip(pad_r[small].tolist(), pad_c[small].tolist(),
                                 strict=True))):
        in_group = small & (pad_r == pr) & (pad_c == pc)
        group = np.flatnonzero(in_group)
        position = np.full(len(b.wanted), -1)
        position[group] = np.arange(len(group))
        nz = b.nz_all[in_group[b.nz_comp]]
        stack = np.zeros((len(group), pr, pc))
        stack[position[b.comp[nz]], b.r_local[a.row[nz]], b.c_local[a.col[nz]]] = a.data[nz]
        found = _determined_stack(stack, tol)
        mine = in_group[b.cell_label]
        out[mine] = found[position[b.cell_label[mine]], b.c_local[mine]]


def _solve_large_blocks(b: _Blocks, out: np.ndarray, tol: float) -> None:
    """Blocks of more than :data:`STACKED_BLOCK` unknowns, without their dense SVD.

    One SVD costs O(rows² × unknowns): a département's hidden communes over a week (rows ≈
    its communes, unknowns ≈ 8 × its communes) would grow with the cube of its communes. So
    each block's rows are split into L, rows pairwise orthogonal (:func:`_orthogonal_rows`:
    each commune's week), and H, the others; the row space is span(L) ⊕ span(R), R = H's rows
    minus their projection on span(L) (exact and sparse: L is orthogonal). An unknown's
    squared projection on the row space is then Σ_l A[l, i]² / |l|² plus its projection on
    R's rows, from a dense SVD of R alone (|H| × unknowns: 8 rows for a département's
    week). Blocks are handled in chunks of about :data:`CHUNK_NONZEROS` non-zeros."""
    big = np.flatnonzero(b.todo & (b.n_c > STACKED_BLOCK))
    if not len(big):
        return
    a = b.a.tocsr()
    row_label = np.full(a.shape[0], -1)
    row_label[b.a.row] = b.comp
    r_order = np.argsort(row_label, kind="stable")
    r_start = np.searchsorted(row_label[r_order], np.arange(len(b.wanted) + 1))
    size = b.nz_start[big + 1] - b.nz_start[big]
    for chunk in np.split(big, np.flatnonzero(np.diff(np.cumsum(size) // CHUNK_NONZEROS)) + 1):
        rows = np.concatenate([r_order[r_start[k]:r_start[k + 1]] for k in chunk])
        cols = np.concatenate([b.c_order[b.c_start[k]:b.c_start[k + 1]] for k in chunk])
        inside = _row_space_norms(a[rows][:, cols].tocsr(), row_label[rows],
                                  b.cell_label[cols], b.c_local[cols], b.n_c, tol)
        out[cols[1.0 - inside < tol]] = True


#: Non-zeros of the large blocks reduced together (:func:`_solve_large_blocks`).
CHUNK_NONZEROS = 2_000_000


def _row_space_norms(sub: sp.csr_matrix, row_block: np.ndarray, col_block: np.ndarray,
                     col_local: np.ndarray, n_c: np.ndarray, tol: float) -> np.ndarray:
    """Squared norm of each unknown's unit vector projected on the row space of its block
    (``sub``: whole blocks; ``row_block``/``col_block``: block of each row and unknown,
    ``col_local``: its position in the block, ``n_c``: unknowns per block)."""
    gram = (sub @ sub.T).tocsr()
    gram.eliminate_zeros()
    in_l = _orthogonal_rows(gram)
    lr, hr = np.flatnonzero(in_l), np.flatnonzero(~in_l)
    a_l = sub[lr]
    scale = 1.0 / gram.diagonal()[lr]
    inside = np.asarray(a_l.multiply(a_l).T @ scale).ravel()
    if not len(hr):
        return inside
    resid = (sub[hr] - (gram[hr][:, lr] @ sp.diags(scale)) @ a_l).tocoo()
    h_block = row_block[hr]
    _, h_start, h_local = _local_positions(h_block, int(n_c.size))
    n_h = np.diff(h_start)
    nz_block = h_block[resid.row]
    order = np.argsort(nz_block, kind="stable")
    nz_start = np.searchsorted(nz_block[order], np.arange(n_c.size + 1))
    position = np.full(n_c.size, -1)
    first = np.flatnonzero(np.r_[True, np.diff(col_block) != 0])
    position[col_block[first]] = first  # the chunk's unknowns are grouped by block, in order
    for k in np.flatnonzero(n_h):
        nz = order[nz_start[k]:nz_start[k + 1]]
        if not len(nz):
            continue
        block = np.zeros((n_h[k], n_c[k]))
        block[h_local[resid.row[nz]], col_local[resid.col[nz]]] = resid.data[nz]
        _, s, vt = np.linalg.svd(block, full_matrices=False)
        rank = int((s > max(block.shape) * np.finfo(float).eps * max(s[0], 1.0)).sum())
        inside[position[k]:position[k] + n_c[k]] += (vt[:rank] ** 2).sum(axis=0)
    return inside


def _orthogonal_rows(gram: sp.csr_matrix, rounds: int = 64) -> np.ndarray:
    """A set of rows with zero inner products (an independent set of the Gram matrix's graph):
    fewest neighbours first, ties in a fixed pseudo-random order (a chain of equations then
    takes a few rounds, not one per link). Rows still open after ``rounds`` are left out."""
    n = gram.shape[0]
    off = (gram - sp.diags(gram.diagonal())).tocsr()
    off.eliminate_zeros()
    off.data[:] = 1.0
    degree = np.diff(off.indptr)
    order = np.lexsort((np.random.default_rng(0).permutation(n), degree))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    open_, chosen = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    starts = np.minimum(off.indptr[:-1], max(off.nnz - 1, 0))
    for _ in range(rounds):
        if not open_.any():
            break
        best = np.full(n, n, dtype=np.int64)
        if off.nnz:
            nb = np.where(open_[off.indices], rank[off.indices], n)
            best = np.where(degree > 0, np.minimum.reduceat(nb, starts), n)
        join = open_ & (rank < best)
        chosen |= join
        open_ &= ~join & ~((off @ join.astype(float)) > 0)
    return chosen


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
