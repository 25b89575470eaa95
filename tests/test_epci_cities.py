"""The EPCI level on the real registry (INSEE COG 2022: fr_epci_communes.csv,
fr_communes_population.csv) with a city file: commune → EPCI and commune → département, both
straight from the communes, disclosure over both trees, per-100,000 rates, and the API.

The city file, tests/fixtures/city_indicators_synthetic_epci.csv, is SYNTHETIC (made up for
these tests, its ``source`` says so): weekly food-aid requests and 115 calls of Rennes (35238)
and Bruz (35047), two of the 43 communes of Rennes Métropole (243500139), 78 weeks from
2020-07-04; Bruz's 115 calls are mostly below the small-count threshold."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features import disclosure as D
from features.cube import build_cube, per_100k, totals_coverage
from features.indicators import IndicatorSpec
from features.sources.base import ParseContext, SourceResult
from features.sources.city_indicators import SOURCE as CITY
from features.sources.insee_territories import load_territories
from tests.conftest import FIXTURES

CITY_FILE = FIXTURES / "city_indicators_synthetic_epci.csv"
RENNES_METROPOLE, LYON = "243500139", "200046977"
RENNES, BRUZ = "35238", "35047"
THRESHOLD = 10


@pytest.fixture(scope="module")
def territories(data_dir):
    return load_territories(data_dir)[0]


@pytest.fixture(scope="module")
def weekly(territories):
    result = CITY.parse(CITY_FILE, ParseContext(territories, dt.date(2022, 1, 1)))
    return build_cube([result], territories)[0]["weekly"]


def _series(var, code) -> np.ndarray:
    return var.sel(territory=code).values


# ---------------------------------------------------------------- the real registry
def test_rennes_and_lyon_metropoles_and_their_communes(territories):
    table = territories.table
    rennes = territories.members(RENNES_METROPOLE)
    assert len(rennes) == 43 and RENNES in rennes and BRUZ in rennes
    assert table.at[RENNES_METROPOLE, "population"] == table.loc[rennes, "population"].sum() \
        == 462580.0
    lyon = territories.members(LYON)
    assert len(lyon) == 59 and "69123" in lyon
    assert table.at[LYON, "population"] == table.loc[lyon, "population"].sum() == 1416545.0
    # Every EPCI's population is its members' (all 1,255, every member commune known).
    epcis = table[table["level"] == "epci"]
    members = table[table["group"] != ""].groupby("group")["population"].sum()
    assert len(epcis) == 1255 and (members.reindex(epcis.index) == epcis["population"]).all()
    # Département populations are their communes' too (same INSEE base).
    communes = table[table["level"] == "commune"]
    by_dep = communes.groupby("parent")["population"].sum()
    assert by_dep["35"] == table.at["35", "population"]


def test_an_epci_spanning_two_departements_sums_whole_into_itself_and_in_parts_into_each(
        territories):
    table = territories.table
    communes = table[table["level"] == "commune"]
    spans = communes.groupby("group")["parent"].nunique()
    code = "247700644"  # CC l'Orée de la Brie: 3 communes in 77, Varennes-Jarcy in 91
    assert spans[code] == 2
    members = territories.members(code)
    deps = {c: territories.parent(c) for c in members}
    assert sorted(set(deps.values())) == ["77", "91"]
    day = pd.Timestamp("2021-01-02")
    value = {c: float(10 * (i + 1)) for i, c in enumerate(members)}
    frame = pd.DataFrame({"territory": members, "date": day, "indicator": "food_aid_requests",
                          "value": [value[c] for c in members]})
    frame["date"] = frame["date"].astype("datetime64[ns]")
    spec = IndicatorSpec("food_aid_requests", "weekly", "requests/week", "t", "t", "t", "sum",
                         count=True)
    food = build_cube([SourceResult("city", frame, [spec])], territories)[0]["weekly"][
        "food_aid_requests"]
    whole = food.sel(territory=code).item()
    parts = {d: food.sel(territory=d).item() for d in ("77", "91")}
    assert whole == sum(value.values()) == parts["77"] + parts["91"]
    coverage = totals_coverage(food)["communes"]
    assert coverage[code]["population_share"] == 1.0  # every member reports: its total
    assert coverage["77"]["population_share"] < 0.1 and coverage["91"]["population_share"] < 0.1
    # The EPCI's navigation parent holds most of its population; it is never summed there.
    assert table.at[code, "parent"] in ("77", "91")
    assert parts[table.at[code, "parent"]] < whole


# ---------------------------------------------------------------- the synthetic city file
def test_two_communes_sum_into_rennes_metropole_and_ille_et_vilaine(weekly, territories):
    food = weekly["food_aid_requests"]
    both = _series(food, RENNES) + _series(food, BRUZ)
    assert np.isfinite(both).all() and len(both) == 78
    np.testing.assert_array_equal(_series(food, RENNES_METROPOLE), both)
    np.testing.assert_array_equal(_series(food, "35"), both)
    # Two of Ille-et-Vilaine's 333 communes are not Ille-et-Vilaine, nor Bretagne, nor France.
    assert np.isnan(food.sel(territory=["R53", "FR"]).values).all()
    pop = territories.table["population"]
    covered = pop[RENNES] + pop[BRUZ]
    coverage = totals_coverage(food)["communes"]
    assert coverage[RENNES_METROPOLE] == {
        "members": 43, "reporting": 2, "population": covered,
        "population_share": round(covered / pop[RENNES_METROPOLE], 6)}
    assert coverage["35"]["members"] == 333 and coverage["35"]["reporting"] == 2
    assert coverage["35"]["population_share"] == round(covered / pop["35"], 6)
    rate = per_100k(food)
    np.testing.assert_allclose(_series(rate, RENNES_METROPOLE), both / covered * 1e5)
    np.testing.assert_allclose(_series(rate, BRUZ), _series(food, BRUZ) / pop[BRUZ] * 1e5)


def test_no_small_commune_count_comes_back_from_the_epci_or_the_departement(weekly):
    calls = weekly["emergency_housing_calls_115"]
    masks = D.public_masks({"weekly": weekly}, THRESHOLD)
    hidden = masks.hidden["weekly"]["emergency_housing_calls_115"]
    row = {str(c): i for i, c in enumerate(weekly["territory"].values)}
    values = calls.values
    bruz = values[row[BRUZ]]
    small = (bruz > 0) & (bruz < THRESHOLD)
    assert small.sum() > 20 and hidden[row[BRUZ]][small].all()
    for total in (RENNES_METROPOLE, "35"):
        # total − Rennes is Bruz: wherever Bruz is small, one of the two is hidden.
        either = hidden[row[total]] | hidden[row[RENNES]]
        assert either[small].all()
    figures = masks.figures["equations"]["emergency_housing_calls_115"]
    assert figures["determined"] == 0 and figures["unresolved"] == 0
    assert not figures.get("fail_closed")


# ---------------------------------------------------------------- the API
@pytest.fixture(scope="module")
def client(tmp_path_factory, territories, weekly):
    from features.settings import Settings
    from features.store import CubeStore
    from service.app import create_app

    home = tmp_path_factory.mktemp("epci-api")
    settings = Settings.from_env(home=str(home), data_dir=str(home),
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    CubeStore(settings).write_vintage({"weekly": weekly}, territories.tables,
                                      {"data_dir": str(home)})
    return create_app({"TESTING": True, "SETTINGS": settings,
                       "RATELIMIT_ENABLED": False}).test_client()


def test_api_lists_every_epci_with_its_communes(client):
    answer = client.get("/api/v1/territories?level=epci&limit=500")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["pagination"]["total"] == 1255
    page = {r["code"]: r for r in body["items"]}
    rennes = page[RENNES_METROPOLE]
    assert rennes["name"] == "Rennes Métropole" and rennes["parent"] == "35"
    assert len(rennes["communes"]) == 43 and {RENNES, BRUZ} <= set(rennes["communes"])
    assert rennes["population"] == 462580.0
    detail = client.get(f"/api/v1/territories/{LYON}").get_json()
    assert detail["level"] == "epci" and detail["population"] == 1416545.0
    assert len(detail["children"]) == 59
    lyon_commune = next(c for c in detail["children"] if c["code"] == "69123")
    assert (lyon_commune["level"], lyon_commune["parent"]) == ("commune", "69")
    assert detail["ancestors"] == []  # navigation walks the cube: 69 has no data in it


def test_api_serves_the_epci_sum_with_its_coverage_and_rate(client, weekly, territories):
    answer = client.get(f"/api/v1/data?indicator=food_aid_requests&territory="
                        f"{RENNES_METROPOLE},35&limit=1000")
    assert answer.status_code == 200, answer.get_json()
    rows = answer.get_json()["items"]
    food = weekly["food_aid_requests"]
    pop = territories.table["population"]
    covered = pop[RENNES] + pop[BRUZ]
    first = next(r for r in rows if r["territory"] == RENNES_METROPOLE)
    expected = food.sel(territory=RENNES).values[0] + food.sel(territory=BRUZ).values[0]
    assert first["value"] == expected and not first["suppressed"]
    assert first["per_100k"] == pytest.approx(expected / covered * 1e5)
    assert first["coverage"] == {"reporting": 2, "children": 2, "members": 43,
                                 "population_share": round(covered / pop[RENNES_METROPOLE], 6)}
    dep = next(r for r in rows if r["territory"] == "35")
    assert dep["coverage"]["members"] == 333 and dep["coverage"]["population_share"] < 0.3
    # Communes are not public; the EPCI's 115 calls are served with disclosure control.
    assert client.get(f"/api/v1/data?indicator=food_aid_requests&territory={BRUZ}"
                      ).status_code == 403
    calls = client.get(f"/api/v1/data?indicator=emergency_housing_calls_115&territory="
                       f"{RENNES_METROPOLE}&limit=1000").get_json()
    assert calls["suppression_threshold"] == THRESHOLD
    assert len(calls["items"]) == 78
    shown = [r for r in calls["items"] if not r["suppressed"]]
    assert all(r["value"] >= THRESHOLD for r in shown)
    csv = client.get(f"/api/v1/data?indicator=food_aid_requests&territory={RENNES_METROPOLE}"
                     f"&format=csv").get_data(as_text=True).splitlines()
    assert csv[0] == ("territory,date,value,per_100k,suppressed,reason,reporting,children,"
                      "members,population_share")
