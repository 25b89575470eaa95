"""Disclosure control (features/disclosure.py) and risk levels (features/risk.py) on arrays of
a few cells: which indicators are protected, which equations the public can see, when an
equation gives a hidden count back, rebuilt stocks and rates that depend on hidden counts, and
the risk inputs' région scope. Expected masks and levels are worked out in each test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from features import disclosure as D
from features import risk

THRESHOLD = 10
nan = np.nan


def test_protected_counts_are_counts_of_persons():
    assert D.is_protected("inc_hosp", {"count": 1})
    assert not D.is_protected("incidence_rate_7d", {"count": 0})
    assert not D.is_protected("icu_beds_adult", {"count": 1})  # a public fact
    assert not D.is_protected("hosp_origin", {"count": 1})


def test_summed_hierarchy_communes_into_both_trees_and_epci_into_nothing():
    codes = ["FR", "R84", "69", "01", "978", "200046977", "69123"]
    levels = ["country", "region", "department", "department", "collectivity", "epci",
              "commune"]
    parents = ["", "FR", "R84", "R84", "FR", "69", "69"]
    groups = ["", "", "", "", "", "", "200046977"]
    children = D.hierarchy_children(codes, levels, parents, groups)
    # The commune (row 6) is a child of its département (2) and of its EPCI (5); the EPCI is
    # nobody's child (its parent 69 is for navigation only).
    assert {p: c.tolist() for p, c in children.items()} == {0: [1, 4], 1: [2, 3], 2: [6],
                                                            5: [6]}
    # Without the groupement (a cube written before it), the administrative tree only.
    children = D.hierarchy_children(codes, levels, parents)
    assert {p: c.tolist() for p, c in children.items()} == {0: [1, 4], 1: [2, 3], 2: [6]}


def test_an_equation_only_where_every_reporting_child_is_there_and_the_sum_holds():
    values = np.array([[10.0, 10.0, 10.0, 5.0],   # parent
                       [4.0, 4.0, nan, 5.0],      # child 1
                       [6.0, 5.0, 6.0, nan],      # child 2
                       [nan, nan, nan, nan]])     # child 3 never reports: not a member
    parts = D.hierarchy_equations(values, {0: np.array([1, 2, 3])}, offset=100)
    [(total, members, kind)] = parts
    # Date 0 only: 10 = 4 + 6. Date 1 does not add up; dates 2-3 miss a child.
    assert total.tolist() == [100] and members.tolist() == [[104, 108]] and kind == "hierarchy"


def test_a_lone_hidden_cell_or_a_small_remainder_breaks_the_rule():
    values = np.array([30.0, 2.0, 25.0, 3.0])
    eqs = D._stack([(np.array([0]), np.array([[1, 2, 3]]), "test")], 4)
    hidden = np.array([False, True, False, False])
    assert D.violations(values, hidden, eqs, THRESHOLD).tolist() == [True]  # 30 − 25 − 3 = 2
    both = np.array([False, True, False, True])
    assert D.violations(values, both, eqs, THRESHOLD).tolist() == [True]  # 2 + 3 = 5 < 10
    with_big = np.array([False, True, True, False])
    assert D.violations(values, with_big, eqs, THRESHOLD).tolist() == [False]  # 27
    # A cell the public already knows counts as visible: hiding it protects nothing.
    known = np.array([False, False, True, False])
    assert D.violations(values, with_big, eqs, THRESHOLD, known).tolist() == [True]
    # Completed: 3 (the smallest positive visible member) joins 2, then 2 + 3 = 5 is still
    # small, so 25 joins them: 30 − nothing visible gives back 30, not a small count.
    hidden, _ = D.complete(values, hidden, eqs, THRESHOLD)
    assert hidden.tolist() == [False, True, True, True]


def test_protection_ends_with_nothing_determined_across_chained_equations():
    # a = b + c and b = d + e; cells: 0 a=20, 1 b=12, 2 c=8, 3 d=5, 4 e=7.
    values = np.array([20.0, 12.0, 8.0, 5.0, 7.0])
    eqs = D._stack([(np.array([0]), np.array([[1, 2]]), "test"),
                    (np.array([1]), np.array([[3, 4]]), "test")], 5)
    primary = np.array([False, False, False, True, False])  # d = 5 is small
    hidden, figures = D.protect(values, primary, eqs, THRESHOLD)
    assert figures["determined"] == 0 and figures["unresolved"] == 0
    # d = 5 is small: e = 7 is hidden with it (b − e would give d back), and b = 12 shown
    # lets the public know d + e only.
    assert hidden.tolist() == [False, False, False, True, True]
    assert not D.determined(hidden, eqs).any()
    assert D.determined(np.array([False, False, False, True, False]), eqs)[3]


def _masks(codes, dates, **hidden) -> D.PublicMasks:
    return D.PublicMasks(THRESHOLD, {"daily": codes}, {"daily": dates},
                         {"daily": dict(hidden)})


def test_rebuilt_days_over_a_hidden_admission_are_hidden():
    dates = pd.date_range("2021-01-01", periods=5, freq="D")
    origin = np.array([[2, 2, 2, 2, 2], [1, 2, 2, 2, 1]], dtype=np.int8)
    daily = xr.Dataset({"icu_origin": (("territory", "date"), origin),
                        "hosp_origin": (("territory", "date"), origin)},
                       coords={"territory": ["A", "B"], "date": dates})
    flows = np.zeros((2, 5), dtype=bool)
    flows[0, 2] = True  # A's admissions of day 2 are hidden
    masks = _masks(["A", "B"], dates, inc_icu=flows, inc_hosp=flows[::-1])
    # ICU: rebuilt days from the hidden admission on (the survival kernel looks back).
    assert D.rebuilt_dependency(daily, "icu", masks).tolist() == [
        [False, False, True, True, True], [False] * 5]
    # Beds by flow accounting: every rebuilt day between B's published anchors (days 0 and 4)
    # depends on its hidden discharge-or-admission of day 2.
    assert D.rebuilt_dependency(daily, "hosp", masks)[1].tolist() == [
        False, True, True, True, False]


def test_rates_that_give_back_a_small_count_are_hidden():
    dates = pd.date_range("2021-01-01", periods=2, freq="D")
    daily = xr.Dataset(
        {"incidence_rate_7d": (("territory", "date"), [[5.0, 20.0], [0.0, 30.0]]),
         "vaccination_coverage_dose1": (("territory", "date"), [[50.0, nan], [1.0, 2.0]])},
        coords={"territory": ["A", "B"], "date": dates,
                "population": ("territory", [100_000.0, 100_000.0]),
                "territory_level": ("territory", ["department"] * 2),
                "territory_parent": ("territory", ["R", "R"])})
    vaccinated = np.array([[True, False], [False, False]])
    masks = _masks(["A", "B"], dates, vaccinated_dose1=vaccinated)
    D.derived_masks(masks, {"daily": daily}, THRESHOLD)
    # 5 per 100,000 of 100,000 people is 5 persons; 0 identifies nobody; 20 and 30 are fine.
    assert masks.hidden["daily"]["incidence_rate_7d"].tolist() == [[True, False],
                                                                   [False, False]]
    # Coverage: hidden where the count is; 1 % of 100,000 is 1,000 persons.
    assert masks.hidden["daily"]["vaccination_coverage_dose1"].tolist() == [[True, False],
                                                                            [False, False]]


def test_public_masks_select_unknown_codes_and_dates_as_visible():
    dates = pd.date_range("2021-01-01", periods=2, freq="D")
    masks = _masks(["A"], dates, inc_hosp=np.array([[True, False]]))
    assert masks.cell("daily", "inc_hosp", "A", "2021-01-01")
    assert not masks.cell("daily", "inc_hosp", "A", "2021-01-02")
    assert not masks.cell("daily", "inc_hosp", "Z", "2021-01-01")
    assert masks.select("daily", "icu_beds_adult", ["A"], dates) is None


# ---------------------------------------------------------------------------- risk
def _daily(codes, levels, parents) -> xr.Dataset:
    return xr.Dataset(coords={"territory": codes, "territory_level": ("territory", levels),
                              "territory_parent": ("territory", parents),
                              "date": pd.to_datetime(["2020-10-01"])})


def test_each_territory_reads_its_region_row():
    codes = ["FR", "R84", "69", "200046977", "69123", "978", "13"]
    daily = _daily(codes, ["country", "region", "department", "epci", "commune",
                           "collectivity", "department"],
                   ["", "FR", "R84", "69", "69", "FR", "R93"])
    # France is its own; 13's région is not in the cube; a collectivité has none.
    assert risk.region_rows(daily, codes).tolist() == [0, 1, 1, 1, 1, -1, -1]


def test_thresholds_are_strict_and_inputs_can_be_read_at_the_region():
    thresholds = risk.RiskThresholds(
        name="test", path="t.yaml", citation="test", urls=(), notes="",
        inputs={"rt": risk.RiskInput("rt", "R", "1", "region"),
                "incidence_rate_7d": risk.RiskInput("incidence_rate_7d", "I", "/1e5",
                                                    "territory")},
        criteria=(risk.Criterion(1, "incidence_rate_7d", 50.0), risk.Criterion(2, "rt", 1.0),
                  risk.Criterion(2, "incidence_rate_7d", 100.0)))
    daily = _daily(["R84", "69", "01"], ["region", "department", "department"],
                   ["FR", "R84", "R84"]).assign(
        rt=(("territory", "date"), [[1.2], [nan], [0.5]]),
        incidence_rate_7d=(("territory", "date"), [[nan], [150.0], [50.0]]))
    out = risk.assess(daily, None, thresholds)
    # 69: 150 > 100 and its région's R 1.2 > 1 (its own R is not used) → level 2.
    assert out["risk_level"].values[:, 0].tolist() == [0, 2, 0]
    assert out["rt"].values[:, 0].tolist() == [1.2, 1.2, 1.2]
    assert out["rt_from"].values.tolist() == ["R84", "R84", "R84"]
    # 01: exactly 50 is not over 50: level 1 ruled out, hence 2 as well.
    assert out["risk_level_max"].values[2, 0] == 0 and out["risk_complete"].values[2, 0]
    # R84: no incidence → level unknown between 0 and 2 (R alone decides nothing).
    assert out["risk_level_max"].values[0, 0] == 2
    assert out["inputs_missing"].values[0, 0] == "incidence_rate_7d"
    described = risk.describe(thresholds)
    assert [lv["level"] for lv in described["levels"]] == [0, 1, 2, 3]
    assert described["inputs"][0]["scope"] == "région du territoire"
