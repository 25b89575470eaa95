"""The disclosure rule of features.disclosure (docs/DISCLOSURE.md) on small synthetic arrays,
the exact solver against brute force, and the masks of the real cube."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import xarray as xr

from features import disclosure as D

THRESHOLD = 10


def _equations(*rows: tuple[int, list[int]], n: int) -> D.Equations:
    """Equations ``cell[total] = Σ cell[members]``."""
    return D._stack([(np.array([t]), np.array([m]), "test") for t, m in rows], n)


def _mask(n: int, *cells: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(cells)] = True
    return out


# ---------------------------------------------------------------------------- the rule
def test_a_lone_hidden_child_gets_the_smallest_positive_sibling_as_complement():
    # total 40 = 4 (small) + 12 + 0 + 24
    values = np.array([40.0, 4.0, 12.0, 0.0, 24.0])
    eqs = _equations((0, [1, 2, 3, 4]), n=5)
    hidden, _ = D.complete(values, _mask(5, 1), eqs, THRESHOLD)
    assert hidden.tolist() == [False, True, True, False, False]
    assert not D.violations(values, hidden, eqs, THRESHOLD).any()


def test_hidden_members_adding_up_to_a_small_count_get_company():
    # 2 + 3 hidden would publish "5" as total − visible members: 25 is hidden too.
    values = np.array([30.0, 2.0, 3.0, 25.0])
    eqs = _equations((0, [1, 2, 3]), n=4)
    assert D.violations(values, _mask(4, 1, 2), eqs, THRESHOLD).all()
    hidden, _ = D.complete(values, _mask(4, 1, 2), eqs, THRESHOLD)
    assert hidden.tolist() == [False, True, True, True]


def test_zero_is_never_hidden_so_the_total_is():
    values = np.array([5.0, 5.0, 0.0, 0.0])
    eqs = _equations((0, [1, 2, 3]), n=4)
    hidden, _ = D.complete(values, _mask(4, 1), eqs, THRESHOLD)
    assert hidden.tolist() == [True, True, False, False]


def test_nothing_hidden_nothing_added():
    values = np.array([30.0, 10.0, 20.0])
    eqs = _equations((0, [1, 2]), n=3)
    hidden, _ = D.complete(values, _mask(3), eqs, THRESHOLD)
    assert not hidden.any()


def test_a_week_with_one_hidden_day_hides_a_second_one():
    dates = pd.date_range("2021-01-03", periods=7, freq="D")  # Sunday..Saturday
    weeks = pd.DatetimeIndex(["2021-01-09"])
    daily = np.array([[12.0, 3.0, 15.0, 11.0, 30.0, 14.0, 20.0]])
    weekly = daily.sum(axis=1, keepdims=True)
    days = D.week_days(dates, weeks)
    assert days.tolist() == [list(range(7))]
    parts = D.time_equations(daily, weekly, np.array([0]), np.array([0]), days, 0, 7,
                             stock=False)
    eqs = D._stack(parts, 8)
    values = np.concatenate([daily.ravel(), weekly.ravel()])
    hidden, _ = D.complete(values, _mask(8, 1), eqs, THRESHOLD)
    assert np.flatnonzero(hidden).tolist() == [1, 3]  # 3 (small), then 11, the smallest
    # A weekly stock is its Saturday: one hidden, the other is too.
    parts = D.time_equations(daily, daily[:, 6:], np.array([0]), np.array([0]), days, 0, 7,
                             stock=True)
    hidden, _ = D.complete(np.concatenate([daily.ravel(), [20.0]]), _mask(8, 6),
                           D._stack(parts, 8), THRESHOLD)
    assert np.flatnonzero(hidden).tolist() == [6, 7]


def test_an_equation_that_does_not_hold_is_none():
    # A published total that is not the sum of its parts gives nothing back.
    values = np.array([[50.0, 24.0], [4.0, 4.0], [20.0, 20.0]])  # parent row 0, children 1, 2
    parts = D.hierarchy_equations(values, {0: np.array([1, 2])}, 0)
    [(total, members, _)] = parts
    assert total.tolist() == [1] and members.tolist() == [[3, 5]]  # only the second date holds


# ---------------------------------------------------------------------------- exact audit
def _brute_force(a: np.ndarray) -> np.ndarray:
    """Unknown i is determined iff its unit vector is a combination of the rows."""
    out = np.zeros(a.shape[1], dtype=bool)
    for i in range(a.shape[1]):
        e = np.zeros(a.shape[1])
        e[i] = 1.0
        y = np.linalg.lstsq(a.T, e, rcond=None)[0]
        out[i] = np.linalg.norm(a.T @ y - e) < 1e-8
    return out


@pytest.mark.parametrize("seed", range(12))
def test_determined_unknowns_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(3, 40), rng.integers(3, 80)
    a = rng.choice([0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 2.5], size=(rows, cols))
    # Some columns alone in a row, some rows copies of others: both happen in the cube.
    a[rng.integers(rows), :] = 0
    a[rng.integers(rows), rng.integers(cols)] = 1.0
    expected = _brute_force(a)
    assert D.determined_unknowns(sp.csr_matrix(a)).tolist() == expected.tolist()


def _table_equations(n_rows: int, n_cols: int) -> tuple[D.Equations, int]:
    """A table with row totals, column totals and a grand total: cell (r, c) = r * n_cols + c,
    row totals, column totals and the grand total after them."""
    inner = n_rows * n_cols
    row_total = inner + np.arange(n_rows)
    col_total = inner + n_rows + np.arange(n_cols)
    grand = inner + n_rows + n_cols
    rows = [(row_total[r], [r * n_cols + c for c in range(n_cols)]) for r in range(n_rows)]
    rows += [(col_total[c], [r * n_cols + c for r in range(n_rows)]) for c in range(n_cols)]
    rows += [(grand, list(row_total)), (grand, list(col_total))]
    return _equations(*rows, n=grand + 1), grand + 1


def test_a_bridge_between_two_cycles_is_found_and_broken():
    """Two 2×2 cycles of hidden cells joined by one more: every line has 0 or ≥ 2 hidden
    cells, yet the joining cell is given back (rows 0-1 minus columns 0-1)."""
    eqs, n = _table_equations(4, 4)
    inner = np.array([[20.0, 30.0, 40.0, 50.0], [25.0, 35.0, 45.0, 55.0],
                      [21.0, 31.0, 41.0, 51.0], [22.0, 32.0, 42.0, 52.0]])
    values = np.concatenate([inner.ravel(), inner.sum(axis=1), inner.sum(axis=0),
                             [inner.sum()]])
    cells = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3), (1, 2)]
    start = _mask(n, *[r * 4 + c for r, c in cells])
    assert not D.violations(values, start, eqs, THRESHOLD).any()
    assert np.flatnonzero(D.determined(start, eqs)).tolist() == [1 * 4 + 2]
    hidden, figures = D.protect(values, start, eqs, THRESHOLD)
    assert figures["determined"] == 0 and figures["audits"] >= 1
    assert not D.determined(hidden, eqs).any() and (hidden >= start).all()
    assert not D.violations(values, hidden, eqs, THRESHOLD).any()


# ---------------------------------------------------------------------------- a small cube
def _cube(days: int = 28) -> dict[str, xr.Dataset]:
    """FR > R1 (A, B, C) and R2 (D alone); daily flows and a stock, weekly sums."""
    rng = np.random.default_rng(3)
    codes = ["A", "B", "C", "D", "R1", "R2", "FR"]
    levels = ["department"] * 4 + ["region"] * 2 + ["country"]
    parents = ["R1", "R1", "R1", "R2", "FR", "FR", ""]
    dates = pd.date_range("2021-01-03", periods=days, freq="D")  # from a Sunday
    base = np.vstack([rng.poisson(lam, days) for lam in (4, 9, 30, 3)]).astype(float)
    flows = np.vstack([base, base[:3].sum(0), base[3:].sum(0), base.sum(0)])
    stock = np.vstack([rng.poisson(lam, days) for lam in (6, 20, 50, 8)]).astype(float)
    stock = np.vstack([stock, stock[:3].sum(0), stock[3:].sum(0), stock.sum(0)])
    origin = np.where(np.arange(days) < 14, 1, 2)[None, :].repeat(7, axis=0).astype(np.int8)
    origin[4:] = 0
    population = np.array([80e3, 200e3, 900e3, 60e3, 1180e3, 60e3, 1240e3])
    coords = {"territory": codes, "date": dates, "territory_level": ("territory", levels),
              "territory_parent": ("territory", parents),
              "population": ("territory", population)}
    flow = {"count": 1, "aggregation": "sum", "stock": 0}
    daily = xr.Dataset({
        "inc_icu": (("territory", "date"), flows, flow),
        "icu": (("territory", "date"), stock, {**flow, "stock": 1}),
        "icu_origin": (("territory", "date"), origin, {"count": 0, "aggregation": "none"}),
        "icu_beds_adult": (("territory", "date"), np.full(flows.shape, 7.0), flow),
    }, coords=coords)
    weeks = pd.date_range(dates[6], dates[-1], freq="W-SAT")
    weekly = xr.Dataset({
        "inc_icu": (("territory", "date"), flows.reshape(7, -1, 7).sum(axis=2), flow),
        "icu": (("territory", "date"), stock[:, 6::7], {**flow, "stock": 1}),
    }, coords={**coords, "date": weeks})
    return {"daily": daily, "weekly": weekly}


def test_public_masks_of_a_small_cube():
    cube = _cube()
    masks = D.public_masks(cube, THRESHOLD)
    daily = cube["daily"]
    flows = daily["inc_icu"].values
    hidden = masks.hidden["daily"]["inc_icu"]
    assert (hidden >= ((flows > 0) & (flows < THRESHOLD))).all()
    assert not (hidden & (flows == 0)).any()
    # Every region-day and week: nothing hidden, or ≥ 2 hidden and not a small hidden sum.
    for parent, kids in ((4, [0, 1, 2]), (5, [3]), (6, [4, 5])):
        for j in range(flows.shape[1]):
            members = hidden[kids, j]
            count = members.sum() + hidden[parent, j]
            assert count != 1, (parent, j)
            if members.any() and not hidden[parent, j]:
                assert not 0 < flows[kids, j][members].sum() < THRESHOLD
    w_hidden = masks.hidden["weekly"]["inc_icu"]
    for t in range(7):
        for w in range(4):
            days = hidden[t, 7 * w:7 * w + 7]
            assert days.sum() + w_hidden[t, w] != 1, (t, w)
    # Stocks: the week is its Saturday; rebuilt days (origin 2) over hidden admissions hidden.
    icu = masks.hidden["daily"]["icu"]
    assert (masks.hidden["weekly"]["icu"] == icu[:, 6::7]).all()
    rebuilt = daily["icu_origin"].values == 2
    assert icu[rebuilt & np.cumsum(hidden, axis=1).astype(bool)].all()
    # Capacities are public facts; nothing determined anywhere.
    assert not masks.has("daily", "icu_beds_adult")
    assert all(f["determined"] == 0 and f["unresolved"] == 0
               for f in masks.figures["equations"].values())
    # Lookups by code and date, in any order, unknown ones never hidden.
    sel = masks.select("daily", "inc_icu", ["C", "ZZ", "A"], daily["date"].values[[3, 0]])
    assert sel.tolist() == [[hidden[2, 3], hidden[2, 0]], [False, False],
                            [hidden[0, 3], hidden[0, 0]]]
    assert masks.select("daily", "icu_beds_adult", ["A"], daily["date"].values[:1]) is None


def test_rates_hidden_over_hidden_counts():
    cube = _cube()
    daily = cube["daily"]
    cases = daily["inc_icu"].values.copy()
    rate = np.full(cases.shape, np.nan)
    rate[:, 6:] = np.lib.stride_tricks.sliding_window_view(cases, 7, axis=1).sum(axis=2) \
        / daily["population"].values[:, None] * 1e5
    daily = daily.assign(inc_cases=(("territory", "date"), cases,
                                    {"count": 1, "aggregation": "sum"}),
                         incidence_rate_7d=(("territory", "date"), rate,
                                            {"count": 0, "aggregation": "none", "stock": 1}))
    masks = D.public_masks({"daily": daily}, THRESHOLD)
    hidden = masks.hidden["daily"]["inc_cases"]
    window = np.lib.stride_tricks.sliding_window_view(hidden, 7, axis=1).any(axis=2)
    shown_rate = ~masks.hidden["daily"]["incidence_rate_7d"][:, 6:]
    assert not (shown_rate & window).any() and shown_rate.any()


def test_forecast_policy():
    assert D.forecast_public([1.0, 12.0, 30.0], 12.0, False, THRESHOLD, True) == (
        [None, 12.0, 30.0], True)
    assert D.forecast_public([3.0, 6.0, 11.0], 6.0, False, THRESHOLD, True) == (
        [None, None, None], True)
    assert D.forecast_public([40.0, 50.0, 60.0], 50.0, True, THRESHOLD, True) == (
        [None, None, None], True)
    assert D.forecast_public([0.0, 12.0], 12.0, False, THRESHOLD, True) == ([0.0, 12.0], False)
    assert D.forecast_public([1.0, 2.0], 1.5, True, THRESHOLD, False) == ([1.0, 2.0], False)


# ---------------------------------------------------------------------------- the real cube
@pytest.fixture(scope="module")
def real_masks(real_cube):
    from features.store import CubeStore

    store = CubeStore(real_cube)
    row = store.current_vintage()
    # The API's key (the vintage id): computed once for this test and the API tests.
    return D.vintage_masks(row["id"], lambda f: store.open(f, vintage_id=row["id"]),
                           real_cube.small_count_threshold), store


def test_real_cube_masks_leave_nothing_determined(real_masks):
    masks, store = real_masks
    equations = masks.figures["equations"]
    assert {"inc_hosp", "inc_icu", "hosp", "icu", "inc_cases"} <= set(equations)
    for name, figures in equations.items():
        assert figures["determined"] == 0 and figures["unresolved"] == 0, (name, figures)
    daily = masks.figures["daily"]["inc_hosp"]
    assert daily["primary"] > 10_000 and daily["secondary"] > 100
    assert masks.figures["weekly"]["inc_hosp"]["secondary"] > 10
    ds = store.open("daily")
    for name in ("inc_hosp", "icu"):
        values = ds[name].transpose("territory", "date").values
        mask = masks.hidden["daily"][name]
        assert (mask >= ((values > 0) & (values < THRESHOLD))).all()
        assert not (mask & np.isnan(values)).any()
    # Public facts never hidden; derived values hidden wherever their counts are.
    assert not masks.has("yearly", "icu_beds_adult")
    cases = masks.hidden["daily"]["inc_cases"]
    window = np.zeros(cases.shape, dtype=bool)
    for k in range(7):
        window[:, k:] |= cases[:, :cases.shape[1] - k]
    assert (masks.hidden["daily"]["incidence_rate_7d"] | ~window
            | np.isnan(ds["incidence_rate_7d"].transpose("territory", "date").values)).all()


def test_an_indicator_that_cannot_be_proved_safe_is_hidden_whole(monkeypatch):
    """Fail closed: when the exact audit cannot run (a block too large) the indicator's public
    cells are all hidden, never served as the incomplete mask."""
    import features.disclosure as disclosure

    def too_large(*args, **kwargs):
        raise ValueError("blocks of more than 4000 hidden cells")

    monkeypatch.setattr(disclosure, "protect", too_large)
    cube = _cube()
    masks = disclosure.public_masks(cube, THRESHOLD)
    for frequency in ("daily", "weekly"):
        present = cube[frequency]["inc_icu"].notnull().values
        assert masks.hidden[frequency]["inc_icu"][present].all()
