"""Communes summed into both trees (features/territories.py, features/cube/totals.py) on the
hand-built registry of tests/unit/two_trees.py: commune → EPCI and commune → département, each
straight from the communes; a partial sum of communes is served with its coverage, never as the
territory's total, and never makes a région or France total; per-100,000 rates divide by the
population the value covers. Expected values are worked out by hand in each test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.cube import build_cube, is_partial, per_100k, rate_population, totals_coverage
from tests.unit.two_trees import E1, E2, E3, W1, W2, territories, weekly


@pytest.fixture(scope="module")
def reg():
    return territories()


def _cube(reg, *results):
    return build_cube(list(results), reg)[0]["weekly"]


def _at(var, code, week):
    return float(var.sel(territory=code, date=week))


# ---------------------------------------------------------------- the registry's two trees
def test_a_commune_has_a_departement_and_an_epci(reg):
    table = reg.table
    assert reg.parent("22001") == "22" and reg.group("22001") == E1
    assert reg.group("69001") == "" and reg.group("35") == ""
    assert reg.members(E1) == ["35001", "22001"] and reg.members("") == []
    # The administrative chain is the only one walked up; an EPCI's parent is for navigation.
    assert reg.ancestors("22001") == ["22", "R53", "FR"]
    assert reg.ancestors(E1) == ["35", "R53", "FR"]
    # Navigation lists a département's EPCIs beside its communes; E1's 22001 is not 35's.
    assert reg.children("35") == ["35001", "35002", "35003", E1, E2]
    assert reg.children(E1) == []  # an EPCI's communes are its members, not its children
    assert table.at[E1, "population"] == 550.0 and table.at["35", "population"] == 1000.0
    # A commune brings its EPCI (and the EPCI's navigation parent) into a closure.
    assert reg.closure(["22001"]) == ["FR", "R53", "22", "35", E1, "22001"]
    assert reg.closure(["69001"]) == ["FR", "R84", "69", "69001"]


def test_tidy_aggregation_from_communes_into_each_tree(reg):
    rows = pd.DataFrame({"territory": ["35001", "22001", "35002", "35"],
                         "date": pd.Timestamp(W1), "indicator": "x",
                         "value": [30.0, 12.0, 5.0, 999.0]})
    by_epci = reg.aggregate(rows, "sum", "epci").set_index("territory")["value"]
    assert by_epci.to_dict() == {E1: 42.0, E2: 5.0}
    by_dep = reg.aggregate(rows, "sum", "department").set_index("territory")["value"]
    assert by_dep.to_dict() == {"35": 35.0, "22": 12.0}
    # A région is summed from départements only (999), never straight from communes.
    by_region = reg.aggregate(rows, "sum", "region").set_index("territory")["value"]
    assert by_region.to_dict() == {"R53": 999.0}


# ---------------------------------------------------------------- the cube
def test_two_communes_of_one_epci_sum_into_it_and_partially_into_their_departements(reg):
    food = _cube(reg, weekly({"35001": [30, 32], "22001": [12, 14]}))["food_aid_requests"]
    assert _at(food, E1, W1) == 42.0 and _at(food, E1, W2) == 46.0
    assert _at(food, "35", W1) == 30.0 and _at(food, "22", W2) == 14.0
    # Partial départements never make Bretagne's or France's total.
    assert np.isnan(food.sel(territory=["R53", "FR"]).values).all()
    # Only the EPCI its communes belong to enters the cube (E2, E3 have no reporting commune).
    assert E2 not in food["territory"].values and E3 not in food["territory"].values
    coverage = totals_coverage(food)
    assert coverage["communes"][E1] == {"members": 2, "reporting": 2, "population": 550.0,
                                        "population_share": 1.0}
    assert coverage["communes"]["35"] == {"members": 3, "reporting": 1, "population": 400.0,
                                          "population_share": 0.4}
    assert coverage["communes"]["22"]["population_share"] == 0.3  # 150 of 500
    assert not is_partial(coverage["communes"][E1])
    assert is_partial(coverage["communes"]["35"]) and is_partial(coverage["communes"]["22"])
    assert coverage["children"][E1] == 2 and coverage["children"]["35"] == 1
    assert "R53" not in coverage["incomplete"]  # no département reported a whole value


def test_per_100k_divides_by_the_population_the_value_covers(reg):
    food = _cube(reg, weekly({"35001": [30, 32], "22001": [12, 14]}))["food_aid_requests"]
    codes = list(food["territory"].values)
    population = dict(zip(codes, rate_population(food), strict=True))
    assert population[E1] == 550.0 and population["35"] == 400.0 and population["22"] == 150.0
    assert population["35001"] == 400.0 and population["FR"] == 2300.0
    rate = per_100k(food)
    assert _at(rate, E1, W1) == pytest.approx(42 / 550 * 1e5)
    # 35's value covers 35001 only: its rate is 35001's, not diluted by 35002 and 35003.
    assert _at(rate, "35", W1) == pytest.approx(7500.0) == _at(rate, "35001", W1)
    absences = _cube(reg, weekly({"35001": [10, 10]}, "absences_pct", "population_mean",
                                 count=False))["absences_pct"]
    assert per_100k(absences) is None  # a rate is not divided again


def test_a_missing_commune_leaves_its_totals_absent_with_the_reason(reg):
    food = _cube(reg, weekly({"35001": [30, 32], "22001": [12, None]}))["food_aid_requests"]
    assert _at(food, E1, W1) == 42.0 and np.isnan(_at(food, E1, W2))
    assert _at(food, "35", W2) == 32.0 and np.isnan(_at(food, "22", W2))
    incomplete = totals_coverage(food)["incomplete"]
    assert incomplete[E1] == {W2: 1}  # 1 of its 2 reporting communes
    assert "22" not in incomplete  # its only reporting commune is missing: nothing to say


def test_whole_departements_make_the_region_and_france_totals(reg):
    every = {"35001": [30, 32], "35002": [5, 6], "35003": [50, 40], "22001": [12, 14],
             "22002": [20, 20]}
    food = _cube(reg, weekly(every))["food_aid_requests"]
    assert _at(food, "35", W1) == 85.0 and _at(food, "22", W1) == 32.0
    assert not is_partial(totals_coverage(food)["communes"]["35"])
    assert _at(food, "R53", W1) == 117.0 and _at(food, "R53", W2) == 112.0
    # France also needs 69 (a département of the registry), which does not report.
    assert np.isnan(_at(food, "FR", W1))
    assert totals_coverage(food)["incomplete"]["FR"] == {W1: 2, W2: 2}
    assert _at(food, E1, W1) == 42.0 and _at(food, E2, W1) == 55.0 and _at(food, E3, W1) == 20.0
    food = _cube(reg, weekly({**every, "69001": [7, 8]}))["food_aid_requests"]
    assert _at(food, "FR", W1) == 124.0 and _at(food, "R84", W2) == 8.0


def test_a_published_departement_value_wins_over_its_communes(reg):
    food = _cube(reg, weekly({"35": [1000, 1000], "35001": [30, 32], "22001": [12, 14]}))[
        "food_aid_requests"]
    assert _at(food, "35", W1) == 1000.0
    coverage = totals_coverage(food)
    assert "35" not in coverage["communes"] and "35" not in coverage["children"]
    assert _at(food, E1, W1) == 42.0
    # Bretagne still lacks a whole value of 22 (its communes' sum is partial).
    assert np.isnan(_at(food, "R53", W1))
    assert coverage["incomplete"]["R53"] == {W1: 1, W2: 1}


def test_rates_are_population_weighted_over_the_reporting_communes(reg):
    absences = _cube(reg, weekly({"35001": [10, 10], "22001": [4, 4]}, "absences_pct",
                                 "population_mean", count=False))["absences_pct"]
    assert _at(absences, E1, W1) == pytest.approx((10 * 400 + 4 * 150) / 550)
    assert _at(absences, "35", W1) == 10.0
    assert totals_coverage(absences)["communes"]["35"]["population_share"] == 0.4


def test_the_groupement_is_a_coordinate_of_the_cube(reg):
    ds = _cube(reg, weekly({"35001": [30, 32], "22001": [12, 14]}))
    group = dict(zip(ds["territory"].values, ds["territory_group"].values, strict=True))
    assert group["35001"] == E1 and group["22001"] == E1 and group["35"] == ""
    parent = dict(zip(ds["territory"].values, ds["territory_parent"].values, strict=True))
    assert parent["22001"] == "22" and parent[E1] == "35"
