"""The EPCI level: SIREN codes, parent département by population, membership table, validation,
and EPCIs never summed into départements, régions or France."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.cube import build_cube
from features.errors import SourceError
from features.indicators import IndicatorSpec
from features.sources.base import SourceResult
from features.sources.insee_epci import EpciSource, epci_parents, siren_is_valid
from features.sources.insee_territories import DepartementsSource, load_territories
from tests.conftest import FIXTURES

OFFICIAL = FIXTURES / "epcicom2022.csv"


@pytest.fixture(scope="module")
def territories(data_dir):
    return load_territories(data_dir)[0]


@pytest.fixture(scope="module")
def departements(data_dir):
    source = DepartementsSource()
    return source.read(source.locate(data_dir))


# ---------------------------------------------------------------- real registry
def test_epci_level_from_the_real_file(territories):
    table = territories.table
    epcis = table[table["level"] == "epci"]
    assert len(epcis) == 1255
    lyon = table.loc["200046977"]
    # Its population is its 59 communes' legal populations (the file states 1,428,062, the
    # population totale, kept in the epci table): per-100,000 rates add up with the communes'.
    assert (lyon["name"], lyon["parent"], lyon["population"]) == (
        "Métropole de Lyon", "69", 1416545.0)
    members = table[table["group"] == "200046977"]
    assert len(members) == 59 and members["population"].sum() == 1416545.0
    assert territories.tables["epci"].set_index("epci_code").at[
        "200046977", "population_total"] == 1428062.0
    assert territories.ancestors("200046977") == ["69", "R84", "FR"]
    # The Grand Paris spans 75, 91, 92, 93, 94 and 95: Paris holds most of its population.
    assert table.at["200054781", "parent"] == "75"
    assert all(len(c) == 9 and c.isdigit() for c in epcis.index)
    assert epcis["parent"].isin(territories.codes("department")).all()


def test_epci_tables_keep_types_shares_and_membership(territories):
    epci = territories.tables["epci"].set_index("epci_code")
    assert epci.at["200046977", "type"] == "MET69"
    assert (epci["type"] == "METRO").sum() == 21
    grand_paris = epci.loc["200054781"]
    assert grand_paris["departements"] == "75;91;92;93;94;95"
    assert 0.25 < grand_paris["parent_share"] < 0.35  # Paris: 2.1 of 7 million
    members = territories.tables["epci_communes"]
    assert members["commune_code"].is_unique
    assert len(members) == 34951
    lyon = members[members["epci_code"] == "200046977"]
    assert "69123" in set(lyon["commune_code"]) and len(lyon) == 59


def test_epci_closure_brings_its_ancestors_not_its_neighbours(territories):
    closure = territories.closure(["200046977", "21"])
    assert closure == ["FR", "R27", "R84", "21", "69", "200046977"]


# ---------------------------------------------------------------- parent rule
def test_parent_is_the_departement_with_most_member_population():
    members = pd.DataFrame({
        "epci_code": ["A"] * 4 + ["B", "B"] + ["C", "C", "C"],
        "commune_code": [f"c{i}" for i in range(9)],
        "dep_code": ["75", "92", "92", "93", "25", "70", "01", "38", "38"],
        "commune_population": [1000, 600, 600, 100, 500, 500, np.nan, np.nan, np.nan],
    })
    parents = epci_parents(members)
    assert parents.at["A", "parent"] == "92"  # 1200 in 92 beats 1000 in 75
    assert parents.at["A", "parent_share"] == pytest.approx(1200 / 2300)
    assert parents.at["B", "parent"] == "25"  # tie on population and communes: smaller code
    assert parents.at["C", "parent"] == "38"  # no populations: more member communes
    assert np.isnan(parents.at["C", "parent_share"])
    assert parents.at["A", "departements"] == "75;92;93"


# ---------------------------------------------------------------- official format
def test_official_dgcl_format_semicolon_bom_crlf(departements):
    epcis, members, warnings = EpciSource().read(OFFICIAL, departements)
    epcis = epcis.set_index("code")
    assert sorted(epcis.index) == ["200041887", "200046977", "200054781"]
    assert epcis.at["200054781", "parent"] == "75"
    assert epcis.at["200054781", "population"] == 7144932
    assert epcis.at["200041887", "parent"] == "25"  # 500 / 500: tie goes to the smaller code
    assert epcis.at["200046977", "type"] == "MET69"
    assert set(members.loc[members["epci_code"] == "200054781", "dep_code"]) == {
        "75", "92", "93", "95"}
    assert not warnings


def _broken(tmp_path, replace: dict[str, str], name: str = "epcicom2022.csv"):
    text = OFFICIAL.read_text(encoding="utf-8-sig")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_conflicting_names_of_one_siren_are_named(tmp_path, departements):
    path = _broken(tmp_path, {
        "69;200046977;Métropole de Lyon;MET69;FPU;3;1428062;1411571;69;69266":
        "69;200046977;Grand Lyon;MET69;FPU;3;1428062;1411571;69;69266"})
    with pytest.raises(SourceError) as info:
        EpciSource().read(path, departements)
    message = str(info.value)
    assert "epcicom2022.csv, line 3, column 'raison_sociale'" in message
    assert "siren=200046977" in message and "'Grand Lyon'" in message
    assert "'Métropole de Lyon'" in message


def test_bad_population_siren_type_and_commune_are_all_reported(tmp_path, departements):
    path = _broken(tmp_path, {
        "Métropole du Grand Paris;METRO;FPU;4;7144932": "Métropole du Grand Paris;METRO;FPU;4;-5",
        "200041887;CC des Deux Vallées Vertes;CC": "200041888;CC des Deux Vallées Vertes;XX",
        ";69;69259;": ";69;6925;",
    })
    with pytest.raises(SourceError) as info:
        EpciSource().read(path, departements)
    message = str(info.value)
    assert ("line 5, column 'total_pop_tot': expected a count >= 0, found '-5'" in message)
    assert ("line 9, column 'siren': expected a SIREN code with a valid check digit (Luhn), "
            "found '200041888'" in message)
    assert "line 9, column 'nature_juridique': expected an EPCI type" in message
    assert ("line 4, column 'insee': expected a 5-character INSEE commune code, found '6925'"
            in message)
    # The Grand Paris' population now differs between its rows: a conflict, named.
    assert "siren=200054781 with conflicting rows" in message


def test_unknown_commune_code_against_the_commune_list(tmp_path, departements, data_dir):
    from features.sources.insee_epci import CommunesPopulationSource

    source = CommunesPopulationSource()
    communes = source.read(source.locate(data_dir), departements)
    path = _broken(tmp_path, {";25;25001;": ";25;25999;"})
    with pytest.raises(SourceError) as info:
        EpciSource().read(path, departements, communes)
    assert ("line 9, column 'insee': expected a current INSEE commune code "
            "(fr_communes_population.csv), found '25999'" in str(info.value))


def test_a_commune_in_two_epcis_is_an_error(tmp_path, departements):
    path = _broken(tmp_path, {";25;25001;": ";69;69123;"})
    with pytest.raises(SourceError) as info:
        EpciSource().read(path, departements)
    assert "each commune in one EPCI only" in str(info.value)
    assert "insee=69123" in str(info.value)


def test_siren_checksum():
    assert siren_is_valid("200046977") and siren_is_valid("243100518")
    assert not siren_is_valid("200046978")


# ---------------------------------------------------------------- cube: never summed upwards
def test_epci_values_never_enter_departement_region_or_france(territories):
    dates = pd.date_range("2020-11-01", periods=2)
    rows = []
    # A total needs every département under it: the others report 0 (counts) and 200 (rates).
    counts = {**dict.fromkeys(territories.codes("department"), 0.0), "69": 10.0, "01": 5.0,
              "200046977": 1000.0}
    for code, value in counts.items():
        for date in dates:
            rows.append({"territory": code, "date": date, "indicator": "x_count", "value": value})
    rates = {**dict.fromkeys(territories.children("R84"), 200.0), "200046977": 900.0}
    for code, value in rates.items():
        rows.append({"territory": code, "date": dates[0], "indicator": "x_rate",
                     "value": value})
    frame = pd.DataFrame(rows)
    frame["date"] = frame["date"].astype("datetime64[ns]")
    specs = [IndicatorSpec("x_count", "daily", "n/day", "", "test", "test", "sum", count=True),
             IndicatorSpec("x_rate", "daily", "/100k", "", "test", "test", "population_mean")]
    datasets, _ = build_cube([SourceResult("t", frame, specs)], territories)
    ds = datasets["daily"]
    level = dict(zip(ds["territory"].values, ds["territory_level"].values, strict=True))
    assert level["200046977"] == "epci"
    # Only EPCIs with data enter the cube; their ancestors come with them.
    assert [c for c, lv in level.items() if lv == "epci"] == ["200046977"]
    count = ds["x_count"].sel(date=dates[0])
    assert float(count.sel(territory="R84")) == 15.0  # 69 + 01 (+ 0 elsewhere), not the EPCI
    assert float(count.sel(territory="200046977")) == 1000.0
    assert float(count.sel(territory="FR")) == 15.0
    rate = ds["x_rate"].sel(date=dates[0])
    assert float(rate.sel(territory="R84")) == pytest.approx(200.0)  # the EPCI's 900 left out
    assert ds["territory_parent"].sel(territory="200046977").item() == "69"
    assert ds["population"].sel(territory="200046977").item() == 1416545.0


def test_tidy_aggregation_leaves_epcis_out(territories):
    date = pd.Timestamp("2020-11-01")
    frame = pd.DataFrame({"territory": ["69", "01", "200046977"], "date": [date] * 3,
                          "indicator": ["x"] * 3, "value": [10.0, 5.0, 1000.0]})
    out = territories.aggregate(frame, "sum", "region").set_index("territory")["value"]
    assert out.to_dict() == {"R84": 15.0}
