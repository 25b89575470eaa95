"""Territory registry: string codes, explicit hierarchy, aggregation rules, unknown codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import UnknownTerritoryError
from features.sources.insee_territories import load_territories


@pytest.fixture(scope="module")
def territories(data_dir):
    return load_territories(data_dir)[0]


def test_codes_are_strings_with_all_departements(territories):
    deps = territories.codes("department")
    assert len(deps) == 101
    for code in ("01", "2A", "2B", "971", "976", "95"):
        assert code in deps
    assert "20" not in territories
    assert all(isinstance(c, str) for c in territories.codes())
    assert len(territories.codes("region")) == 18
    assert territories.codes("country") == ["FR"]


def test_hierarchy_commune_to_france(territories):
    assert territories.ancestors("69123") == ["69", "R84", "FR"]  # Lyon
    assert territories.ancestors("2A") == ["R94", "FR"]
    assert territories.ancestors("978") == ["FR"]  # Saint-Martin, a collectivity
    assert set(territories.children("R94")) == {"2A", "2B"}
    closure = territories.closure(["69", "2A"])
    assert closure[0] == "FR" and set(closure) == {"FR", "R84", "R94", "69", "2A"}


def test_france_population_is_sum_of_its_parts(territories):
    table = territories.table
    parts = table[table["level"].isin(["department", "collectivity"])]["population"].sum()
    assert table.at["FR", "population"] == pytest.approx(parts)
    r84 = table.loc[territories.children("R84"), "population"].sum()
    assert table.at["R84", "population"] == pytest.approx(r84)


def test_sum_and_population_weighted_mean(territories):
    date = pd.Timestamp("2020-11-01")
    frame = pd.DataFrame({
        "territory": ["2A", "2B"], "date": [date, date], "indicator": ["x", "x"],
        "value": [10.0, 30.0]})
    summed = territories.aggregate(frame, "sum", "region")
    assert summed.set_index("territory").at["R94", "value"] == 40.0
    mean = territories.aggregate(frame, "population_mean", "region")
    pop = territories.population(["2A", "2B"]).to_numpy()
    expected = (10 * pop[0] + 30 * pop[1]) / pop.sum()
    assert mean.set_index("territory").at["R94", "value"] == pytest.approx(expected)


def test_partial_sum_is_not_a_total(territories):
    d1, d2 = pd.Timestamp("2020-11-01"), pd.Timestamp("2020-11-02")
    frame = pd.DataFrame({"territory": ["2A", "2B", "2A"], "date": [d1, d1, d2],
                          "indicator": ["x"] * 3, "value": [1.0, 2.0, 5.0]})
    out = territories.aggregate(frame, "sum", "region")
    assert list(out["date"]) == [d1]  # 2B missing on d2: no regional total that day
    assert out["value"].tolist() == [3.0]
    assert not np.isnan(out["value"]).any()


def test_unknown_and_retired_codes_are_named(territories):
    with pytest.raises(UnknownTerritoryError) as info:
        territories.check(["01", "99", "20", "R82"])
    message = str(info.value)
    assert "'99'" in message
    assert "'20' (retired" in message and "2A and 2B" in message
    assert "'R82' (retired" in message
    assert "'01'" not in message
