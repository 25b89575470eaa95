"""Disclosure control over both trees (features/disclosure/) on the hand-built registry of
tests/unit/two_trees.py, where EPCI E1 spans départements 35 and 22: EPCI = Σ its communes and
département = Σ its communes are equations the public sees, so a small commune count is never
given back by 'EPCI − its other communes' nor by 'département − an EPCI inside it'.

One week of a city count: 35001 = 3 (small), 35002 = 20, 35003 = 30, 22001 = 40, 22002 = 70,
so E1 = 43, E2 = 50, E3 = 70, 35 = 53, 22 = 110, R53 = 163 (every commune of Bretagne
reports: whole départements; France has no value, 69 does not report)."""

from __future__ import annotations

import numpy as np

from features import disclosure as D
from features.cube import build_cube
from tests.unit.two_trees import E1, E2, E3, territories, weekly

THRESHOLD = 10
VALUES = {"35001": [3], "35002": [20], "35003": [30], "22001": [40], "22002": [70]}


def _cube():
    return build_cube([weekly(VALUES)], territories())[0]["weekly"]


def _public(ds) -> dict[str, float | None]:
    """What the public reads of the week: code → value, None where hidden."""
    hidden = D.public_masks({"weekly": ds}, THRESHOLD).hidden["weekly"]["food_aid_requests"]
    values = ds["food_aid_requests"].values[:, 0]
    return {str(c): None if h else float(v)
            for c, h, v in zip(ds["territory"].values, hidden[:, 0], values, strict=True)}


#: Every sum the public can check, written out by hand: total → members (France has no value:
#: 69 does not report).
EQUATIONS = {E1: ["35001", "22001"], E2: ["35002", "35003"], E3: ["22002"],
             "35": ["35001", "35002", "35003"], "22": ["22001", "22002"], "R53": ["35", "22"]}


def _determined(public: dict[str, float | None], cell: str) -> bool:
    """Whether the hidden ``cell`` follows from the equations and the visible values: its
    unit vector lies in the row space of the equations restricted to the hidden cells."""
    hidden = [c for c, v in public.items() if v is None]
    rows = []
    for total, members in EQUATIONS.items():
        row = np.zeros(len(hidden))
        for code, sign in [(total, 1.0)] + [(m, -1.0) for m in members]:
            if code in hidden:
                row[hidden.index(code)] += sign
        if row.any():
            rows.append(row)
    a = np.array(rows)
    unit = np.eye(len(hidden))[hidden.index(cell)]
    return np.linalg.matrix_rank(np.vstack([a, unit])) == np.linalg.matrix_rank(a)


def test_the_cube_holds_both_trees():
    food = _cube()["food_aid_requests"]
    value = dict(zip(food["territory"].values, food.values[:, 0], strict=True))
    assert (value[E1], value[E2], value[E3]) == (43.0, 50.0, 70.0)
    assert (value["35"], value["22"], value["R53"]) == (53.0, 110.0, 163.0)


def test_epci_and_departement_equations_hide_the_small_commune_count():
    ds = _cube()
    public = _public(ds)
    assert public["35001"] is None
    assert not _determined(public, "35001")
    # Neither difference gives it back: EPCI − its other commune, département − EPCI.
    assert public[E1] is None or public["22001"] is None
    assert public["35"] is None or public[E2] is None
    # Every hidden cell is protected, not only the small one.
    assert not any(_determined(public, c) for c, v in public.items() if v is None)


def test_without_the_groupement_the_epci_would_give_it_back():
    """The same cube audited with the administrative tree only (a cube without its
    ``territory_group``): E1 − 22001 and 35 − E2 are both 3."""
    public = _public(_cube().drop_vars("territory_group"))
    assert public["35001"] is None
    assert public[E1] - public["22001"] == 3.0
    assert public["35"] - public[E2] == 3.0
    assert _determined(public, "35001")


def test_the_figures_count_the_new_equations():
    masks = D.public_masks({"weekly": _cube()}, THRESHOLD)
    figures = masks.figures["equations"]["food_aid_requests"]
    # E1, E2, E3, 35, 22 from communes; R53 from départements (France has no value).
    assert figures["hierarchy"] == len(EQUATIONS) == 6
    assert figures["determined"] == 0 and figures["unresolved"] == 0
