"""The exact audit on blocks of more than STACKED_BLOCK hidden cells (solved by splitting the
rows into orthogonal ones and the rest, features.disclosure.audit._solve_large_blocks) gives
the same determined cells as a dense projection on the whole row space, on the shape that
made the audit grow with the cube of a département's communes (its communes × the 7 days of a
week, with the weekly and département totals) and on random systems."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from features import disclosure as D
from features.disclosure import audit


def _dense_determined(a: np.ndarray) -> np.ndarray:
    """Unknown i is determined iff its unit vector lies in the row space (orthonormal basis
    from the SVD of the whole matrix)."""
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    rank = int((s > max(a.shape) * np.finfo(float).eps * s[0]).sum()) if len(s) else 0
    return 1.0 - (vt[:rank] ** 2).sum(axis=0) < 1e-10


def _week_table(n_communes: int, hidden_share: float, seed: int) -> np.ndarray:
    """The equations of one département's week restricted to a random set of hidden cells:
    each day's département total = Σ its communes (7 rows), each commune's week = Σ its days
    (one row per commune), the département's week = Σ its communes' weeks; cells: communes ×
    days, then the communes' weeks, then the département's days and week."""
    rng = np.random.default_rng(seed)
    days, comm_week = 7 * n_communes, 7 * n_communes + np.arange(n_communes)
    dep_day, dep_week = 8 * n_communes + np.arange(7), 8 * n_communes + 7
    cell = np.arange(days).reshape(n_communes, 7)
    rows = [(dep_day[d], cell[:, d]) for d in range(7)]
    rows += [(comm_week[c], cell[c]) for c in range(n_communes)]
    rows += [(dep_week, comm_week), (dep_week, dep_day)]
    n = dep_week + 1
    signed = np.zeros((len(rows), n))
    for i, (total, members) in enumerate(rows):
        signed[i, total] = 1.0
        signed[i, members] = -1.0
    hidden = rng.random(n) < hidden_share
    hidden[dep_day] = rng.random(7) < 0.1  # départements' days: mostly visible
    # A commune with one hidden day and hidden week: that day is given back by its week
    # unless the audit sees the département's day too.
    hidden[cell[0]] = False
    hidden[[cell[0, 3], comm_week[0]]] = True
    a = signed[:, hidden]
    return a[np.abs(a).sum(axis=1) > 0]


@pytest.mark.parametrize("n_communes,share,seed", [(20, 0.7, 0), (30, 0.9, 1), (40, 0.5, 2),
                                                   (60, 0.95, 3), (50, 0.4, 4)])
def test_a_departements_week_of_communes(n_communes, share, seed):
    a = _week_table(n_communes, share, seed)
    assert a.shape[1] > audit.STACKED_BLOCK  # the large-block path
    expected = _dense_determined(a)
    assert D.determined_unknowns(sp.csr_matrix(a)).tolist() == expected.tolist()


@pytest.mark.parametrize("seed", range(8))
def test_random_large_blocks(seed):
    rng = np.random.default_rng(100 + seed)
    rows, cols = int(rng.integers(20, 90)), int(rng.integers(80, 220))
    a = rng.choice([0.0] * 30 + [1.0, -1.0, 2.5], size=(rows, cols))
    a[:, rng.integers(cols, size=3)] = 0.0  # unknowns in no equation
    a[rng.integers(rows)] = a[rng.integers(rows)]  # a repeated equation
    kept = np.abs(a).sum(axis=1) > 0
    found = D.determined_unknowns(sp.csr_matrix(a[kept]))
    assert found.tolist() == _dense_determined(a[kept]).tolist()


def test_orthogonal_rows_share_no_unknown_with_a_nonzero_product():
    rng = np.random.default_rng(7)
    a = sp.csr_matrix(rng.choice([0.0] * 12 + [1.0, -1.0], size=(200, 300)))
    gram = (a @ a.T).toarray()
    chosen = audit._orthogonal_rows(sp.csr_matrix(gram))
    assert chosen.sum() > 1
    picked = gram[np.ix_(chosen, chosen)]
    assert not (picked - np.diag(np.diag(picked))).any()
