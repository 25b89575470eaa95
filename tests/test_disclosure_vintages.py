"""Suppression across vintages (docs/DISCLOSURE.md, "Across vintages"): an attacker who kept
yesterday's public answers (or reads them through ``as_of``) and reads today's must get no
hidden count back from the two together.

Two vintages of a small cube: the second adds three days that complete a week, one of them a
small count of a one-département région. Hiding that day makes its week (newly published)
need a complement; the rule of a single vintage takes the smallest visible day of the week,
shown yesterday with the same value, so that yesterday's answer and today's weekly total give
the small count back. Protected across vintages, the complements are cells new today."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from features import disclosure as D

THRESHOLD = 10
CODES = ["A", "B", "C", "D", "R1", "R2", "FR"]
LEVELS = ["department"] * 4 + ["region"] * 2 + ["country"]
PARENTS = ["R1", "R1", "R1", "R2", "FR", "FR", ""]
#: parent row → child rows (R2 has one département: its copy).
TREE = {4: [0, 1, 2], 5: [3], 6: [4, 5]}


def _flows(days: int = 28) -> np.ndarray:
    """Département flows: large values, a few small ones, and in D's last week a smallest
    day 21 (11, shown in the first vintage) and a small day 27 (3, new in the second)."""
    rng = np.random.default_rng(7)
    base = rng.integers(20, 60, size=(4, days)).astype(float)
    base[0, [3, 10]] = [4.0, 6.0]  # small counts of the first vintage
    base[1, 10] = 15.0
    base[3, 21:28] = [11.0, 30.0, 25.0, 28.0, 19.0, 17.0, 3.0]
    return base


def _vintage(base: np.ndarray, days: int) -> dict[str, xr.Dataset]:
    """The cube of the first ``days`` days: daily flows and the complete weeks' sums."""
    base = base[:, :days]
    flows = np.vstack([base, base[:3].sum(0), base[3:].sum(0), base.sum(0)])
    dates = pd.date_range("2021-01-03", periods=days, freq="D")  # from a Sunday
    coords = {"territory": CODES, "date": dates, "territory_level": ("territory", LEVELS),
              "territory_parent": ("territory", PARENTS)}
    attrs = {"count": 1, "aggregation": "sum", "stock": 0}
    weeks = days // 7
    daily = xr.Dataset({"inc_icu": (("territory", "date"), flows, attrs)}, coords=coords)
    weekly = xr.Dataset(
        {"inc_icu": (("territory", "date"),
                     flows[:, :7 * weeks].reshape(len(CODES), weeks, 7).sum(axis=2), attrs)},
        coords={**coords, "date": pd.date_range(dates[6], periods=weeks, freq="W-SAT")})
    return {"daily": daily, "weekly": weekly}


def _system(cube: dict[str, xr.Dataset]) -> tuple[np.ndarray, D.Equations]:
    """Every equation the public can write on one vintage, over its cells (daily then
    weekly, territory-major): parent = Σ children at each date, week = Σ its 7 days."""
    daily = cube["daily"]["inc_icu"].values
    weekly = cube["weekly"]["inc_icu"].values
    nd, nw = daily.shape[1], weekly.shape[1]
    w_off = daily.size
    rows = []
    for parent, kids in TREE.items():
        rows += [(parent * nd + t, [k * nd + t for k in kids]) for t in range(nd)]
        rows += [(w_off + parent * nw + w, [w_off + k * nw + w for k in kids])
                 for w in range(nw)]
    for r in range(len(CODES)):
        rows += [(w_off + r * nw + w, [r * nd + 7 * w + k for k in range(7)])
                 for w in range(nw)]
    values = np.concatenate([daily.ravel(), weekly.ravel()])
    eqs = D._stack([(np.array([t]), np.array([m]), "test") for t, m in rows], len(values))
    return values, eqs


def _cells(cube: dict[str, xr.Dataset], masks: D.PublicMasks
           ) -> dict[tuple[str, int, pd.Timestamp], tuple[float, bool]]:
    """(frequency, territory row, date) → (value, hidden from the public)."""
    out = {}
    for f in ("daily", "weekly"):
        values = cube[f]["inc_icu"].values
        hidden = masks.hidden[f]["inc_icu"]
        for r in range(values.shape[0]):
            for j, date in enumerate(cube[f]["date"].values):
                out[(f, r, pd.Timestamp(date))] = (values[r, j], bool(hidden[r, j]))
    return out


def _given_back(cube, masks, other_cube, other_masks) -> list:
    """Hidden cells of ``cube`` that its equations determine once every cell shown by either
    vintage with the value it has in ``cube`` is known (the exact solver of the module)."""
    values, eqs = _system(cube)
    mine, other = _cells(cube, masks), _cells(other_cube, other_masks)
    keys = list(mine)  # same order as _system's cells
    unknown = np.array([
        mine[k][1] and not (k in other and not other[k][1] and other[k][0] == mine[k][0])
        for k in keys])
    assert not D.violations(values, masks_vector(masks, cube), eqs, THRESHOLD).any()
    return [keys[i] for i in np.flatnonzero(D.determined(unknown, eqs))]


def masks_vector(masks: D.PublicMasks, cube) -> np.ndarray:
    return np.concatenate([masks.hidden[f]["inc_icu"].ravel() for f in ("daily", "weekly")])


def _two_vintages():
    base = _flows()
    first, second = _vintage(base, 25), _vintage(base, 28)
    m1 = D.public_masks(first, THRESHOLD)
    m2 = D.public_masks(second, THRESHOLD, previous=m1.record)
    return first, m1, second, m2


def test_the_union_of_two_vintages_gives_back_no_hidden_cell():
    first, m1, second, m2 = _two_vintages()
    # The scenario: D's day 27 is small and new; D's day 21 (11) was shown yesterday.
    day21, day27 = pd.Timestamp("2021-01-24"), pd.Timestamp("2021-01-30")
    assert m2.cell("daily", "inc_icu", "D", day27)
    assert not m1.cell("daily", "inc_icu", "D", day21)
    assert not m2.cell("daily", "inc_icu", "D", day21)  # known: hiding it would hide nothing
    # Each vintage alone and both together: nothing determined.
    assert not D.determined(masks_vector(m1, first), _system(first)[1]).any()
    assert _given_back(second, m2, first, m1) == []
    assert _given_back(first, m1, second, m2) == []
    for figures in m2.figures["equations"].values():
        assert figures["determined"] == 0 and figures["unresolved"] == 0
        assert figures["known"] > 0


def test_a_single_vintage_rule_is_undone_by_yesterday():
    """The attack of the test above is not vacuous: without the record of the first vintage
    the second one hides a day shown the day before, and the union gives the small day back."""
    base = _flows()
    first, second = _vintage(base, 25), _vintage(base, 28)
    m1, alone = D.public_masks(first, THRESHOLD), D.public_masks(second, THRESHOLD)
    assert not D.determined(masks_vector(alone, second), _system(second)[1]).any()
    assert alone.cell("daily", "inc_icu", "D", "2021-01-24")
    assert ("daily", 3, pd.Timestamp("2021-01-30")) in _given_back(second, alone, first, m1)


def test_cells_hidden_yesterday_stay_hidden_and_shown_ones_stay_shown():
    first, m1, second, m2 = _two_vintages()
    old, new = _cells(first, m1), _cells(second, m2)
    for key, (value, hidden) in old.items():
        if key in new and new[key][0] == value:
            assert new[key][1] == hidden, key


def test_the_record_is_written_read_back_and_chained(tmp_path):
    """store_masks computes the previous vintage first, writes each record once and the
    next vintage reads it back (even from another process: the memo is cleared)."""
    base = _flows()
    cubes = {"v1": _vintage(base, 25), "v2": _vintage(base, 28)}

    class Store:
        root = tmp_path
        opened: list = []

        def list_vintages(self):
            return [{"id": "v2", "issued_at": pd.Timestamp("2021-02-01")},
                    {"id": "v1", "issued_at": pd.Timestamp("2021-01-29")}]

        def open(self, frequency, vintage_id):
            self.opened.append(vintage_id)
            return cubes[vintage_id][frequency]

    D._CACHE.clear()
    D._PREVIOUS.clear()
    store = Store()
    m2 = D.store_masks(store, "v2", THRESHOLD)
    assert store.opened[0] == "v1" and "v2" in store.opened
    files = sorted(p.name for p in (tmp_path / "disclosure").iterdir())
    assert files == ["v1-t10.npz", "v2-t10.npz"]
    _, _, _, expected = _two_vintages()
    for f in ("daily", "weekly"):
        assert (m2.hidden[f]["inc_icu"] == expected.hidden[f]["inc_icu"]).all()
    # A new process: the record of v1 is read back, v1 itself is not opened again.
    D._CACHE.clear()
    D._PREVIOUS.clear()
    store.opened.clear()
    again = D.store_masks(store, "v2", THRESHOLD)
    assert set(store.opened) == {"v2"}
    assert (again.hidden["daily"]["inc_icu"] == m2.hidden["daily"]["inc_icu"]).all()
    record = D.PublicRecord.load(tmp_path / "disclosure" / "v1-t10.npz")
    assert np.array_equal(record.known["daily"]["inc_icu"],
                          expected_record_known(cubes["v1"]), equal_nan=True)
    D._CACHE.clear()
    D._PREVIOUS.clear()


def expected_record_known(cube) -> np.ndarray:
    masks = D.public_masks(cube, THRESHOLD)
    values = cube["daily"]["inc_icu"].values
    return np.where(masks.hidden["daily"]["inc_icu"], np.nan, values)


def test_the_tests_equations_are_the_modules():
    """The attack's own equations (hierarchy and weeks) are as many as the module's."""
    cube = _vintage(_flows(), 28)
    _, eqs = _system(cube)
    masks = D.public_masks(cube, THRESHOLD)
    assert masks.figures["equations"]["inc_icu"]["count"] == eqs.size
    assert len({tuple(sorted(eqs.signed()[i].indices.tolist())) for i in range(eqs.size)}) \
        == eqs.size
