"""The territory registry on a hand-built registry (tests/unit/tiny.py): levels, parents,
populations, the walk up the hierarchy, closure order, unknown codes and the aggregation rules
('a partial sum is not a total', population-weighted means, EPCIs never summed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import UnknownTerritoryError
from features.territories import (
    ancestor_at,
    chain_to_root,
    region_code,
    territory_code_errors,
    territory_level_errors,
)
from tests.unit.tiny import POPULATION, territories

DAY1, DAY2 = pd.Timestamp("2020-11-01"), pd.Timestamp("2020-11-02")


@pytest.fixture(scope="module")
def reg():
    return territories()


def test_levels_parents_and_populations(reg):
    table = reg.table
    assert table.at["FR", "level"] == "country" and table.at["FR", "parent"] == ""
    assert reg.codes("region") == ["R53", "R84"]
    assert reg.parent("35") == "R53" and reg.parent("01") == "R84"
    assert table.at["978", "level"] == "collectivity" and reg.parent("978") == "FR"
    assert table.at["35238", "level"] == "commune" and table.at["243500139", "level"] == "epci"
    # Régions: the sum of their départements; France: every département and collectivité.
    assert table.at["R53", "population"] == 1_600_000.0
    assert table.at["R84", "population"] == 2_450_000.0
    assert table.at["FR", "population"] == sum(POPULATION.values()) == 4_085_000.0


def test_region_code_pads_the_insee_code():
    assert region_code("84") == "R84" and region_code(" 1") == "R01" and region_code("6") == "R06"


def test_ancestors_walk_up_to_france(reg):
    assert reg.ancestors("35238") == ["35", "R53", "FR"]
    assert reg.ancestors("243500139") == ["35", "R53", "FR"]
    assert reg.ancestors("978") == ["FR"]
    assert reg.ancestors("FR") == []
    with pytest.raises(KeyError):
        reg.ancestors("99")


def test_ancestor_at_a_level_or_none(reg):
    assert reg.ancestor_at("69123", "region") == "R84"
    assert reg.ancestor_at("R84", "region") == "R84"  # a code is its own ancestor
    assert reg.ancestor_at("978", "region") is None  # a collectivité has no région
    assert reg.ancestor_at("FR", "department") is None
    parent_of = {"c": "d", "d": "r", "r": "FR"}
    level_of = {"c": "commune", "d": "department", "r": "region", "FR": "country"}
    assert ancestor_at("c", "department", parent_of, level_of) == "d"


def test_chain_to_root_never_loops():
    assert chain_to_root("a", {"a": "b", "b": "a"}) == ["a", "b"]
    assert chain_to_root("x", {}) == ["x"]
    assert chain_to_root("69", {"69": "R84", "R84": "FR", "FR": ""}) == ["69", "R84", "FR"]


def test_children_and_closure_order(reg):
    assert reg.children("R53") == ["35", "22"]
    assert set(reg.children("FR")) == {"R53", "R84", "978"}
    closure = reg.closure(["35238", "01", "243500139"])
    # France, then régions, then départements, EPCIs, communes; an EPCI brings its
    # département, never the other EPCIs or communes of it.
    assert closure == ["FR", "R53", "R84", "01", "35", "243500139", "35238"]
    assert reg.closure(["978"]) == ["FR", "978"]


def test_unknown_codes_in_first_seen_order_and_retired_ones_named(reg):
    assert reg.unknown(["35", "99", "20", "99", "R24"]) == ["99", "20", "R24"]
    with pytest.raises(UnknownTerritoryError) as err:
        reg.check(["35", "20", "R24", "99"])
    text = str(err.value)
    assert "'20' (retired: Corse, split into 2A and 2B in 1976)" in text
    assert "'R24'" in text and "'99'" in text
    reg.check(["35", "R84", "FR"])  # known codes: nothing raised


def test_user_code_errors_name_the_code_and_what_was_expected():
    assert territory_code_errors(["69", "2A", "R84", "FR", "971"]) == []
    [error] = territory_code_errors(["Lyon"], where="--territory", groups=())
    assert error == ("--territory: 'Lyon' is not a territory code "
                     "(expected FR, a région R84, a département 69, 2A, 971)")
    assert territory_code_errors(["regions"]) == []  # a group, accepted by default
    levels = {"69": "department", "R84": "region"}
    assert territory_level_errors(["69"], levels, ["department"]) == []
    [other_level] = territory_level_errors(["R84"], levels, ["department"],
                                           hints={"region": "use --level region"})
    assert other_level == "territories: 'R84' is a région, not a département: use --level region"
    [retired] = territory_level_errors(["20"], levels, ["department"])
    assert "retired: Corse" in retired and "not a territory of the cube" in retired


def _rows(values: list[tuple[str, pd.Timestamp, float]]) -> pd.DataFrame:
    return pd.DataFrame([(c, d, "x", v) for c, d, v in values],
                        columns=["territory", "date", "indicator", "value"])


def test_sum_needs_every_reporting_child_on_the_date(reg):
    # 35 and 22 report day 1; only 35 reports day 2: R53's day-2 sum would read as a fall.
    rows = _rows([("35", DAY1, 10.0), ("22", DAY1, 5.0), ("35", DAY2, 12.0),
                  ("69", DAY1, 7.0), ("69", DAY2, 8.0)])
    out = reg.aggregate(rows, "sum", "region").set_index(["territory", "date"])["value"]
    assert out[("R53", DAY1)] == 15.0
    assert ("R53", DAY2) not in out.index
    # R84: 01 never reports this indicator, so 69 alone is every reporting child.
    assert out[("R84", DAY1)] == 7.0 and out[("R84", DAY2)] == 8.0


def test_population_mean_over_the_children_that_reported(reg):
    rows = _rows([("35", DAY1, 10.0), ("22", DAY1, 30.0), ("35", DAY2, 20.0)])
    out = reg.aggregate(rows, "population_mean", "region").set_index(["territory", "date"])
    expected = (10.0 * 1_000_000 + 30.0 * 600_000) / 1_600_000  # 17.5
    assert out.at[("R53", DAY1), "value"] == pytest.approx(expected) == pytest.approx(17.5)
    assert out.at[("R53", DAY2), "value"] == pytest.approx(20.0)


def test_epci_rows_are_never_summed_and_unknown_methods_refused(reg):
    rows = _rows([("35", DAY1, 10.0), ("243500139", DAY1, 1000.0), ("978", DAY1, 3.0)])
    out = reg.aggregate(rows, "sum", "country").set_index("territory")["value"]
    assert out["FR"] == 13.0  # the département and the collectivité, never the EPCI
    assert reg.aggregate(rows.iloc[[1]], "sum", "region").empty
    with pytest.raises(ValueError, match="cannot aggregate with 'median'"):
        reg.aggregate(rows, "median", "region")


def test_population_lookup_keeps_the_order_and_unknowns(reg):
    pops = reg.population(["22", "99", "35"])
    assert list(pops.index) == ["22", "99", "35"]
    assert pops["22"] == 600_000.0 and np.isnan(pops["99"])
