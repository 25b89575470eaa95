"""The city page's server side (issue 16): ``/ville`` (find an EPCI or a commune, without
script), ``/ville/<code>`` and its page data ``/tableau/donnees/ville/<code>``
(:func:`service.usecases.city_reads.city_page`): the territory's own indicators summed from its
communes with their coverage and rates per 100,000 inhabitants, their forecasts and whether
Vigie beats the baseline for them, its métropole's incidence, its département's hospital
pressure and unemployment; every word French; the public's limits (communes, small counts).

The city file is SYNTHETIC (tests/fixtures/city_indicators_synthetic_epci.csv, see
:mod:`tests.city_fixtures`). Browser behaviour is in ``test_dashboard_city_browser.py``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from features.settings import Settings
from tests.city_fixtures import (
    BRUZ,
    CITY_INDICATORS,
    RENNES,
    RENNES_METROPOLE,
)
from tests.dashboard_french import displayed_strings, problems, visible_text


@pytest.fixture(scope="module")
def client(city_settings: Settings):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": city_settings,
                       "RATELIMIT_ENABLED": False}).test_client()


@pytest.fixture(scope="module")
def analyst(city_settings: Settings) -> dict[str, str]:
    from features.catalog import get_engine
    from service.auth import create_token

    token = create_token(get_engine(city_settings.database_url), "city-page-analyst", "analyst")
    return {"Authorization": f"Bearer {token}"}


def _page_data(client, code: str, headers: dict | None = None) -> dict:
    response = client.get(f"/tableau/donnees/ville/{code}", headers=headers or {})
    assert response.status_code == 200, response.data[:300]
    return response.get_json()


def _weekly(settings: Settings):
    from features.store import CubeStore

    return CubeStore(settings).open("weekly")


def test_epci_page_data_sums_its_communes_with_coverage_rate_and_forecast(
        client, analyst, city_settings) -> None:
    body = _page_data(client, RENNES_METROPOLE, analyst)
    place = body["territory"]
    assert (place["name"], place["level"], place["departement"]) == \
        ("Rennes Métropole", "epci", "35")
    assert place["communes"] == 43 and place["population"] == 462580.0
    indicators = {i["indicator"]: i for i in body["indicators"]}
    assert sorted(indicators) == list(CITY_INDICATORS)  # no OxCGRT, no technical code
    food = indicators["food_aid_requests"]
    assert (food["label"], food["unit"], food["frequency"]) == \
        ("Demandes d'aide alimentaire", "demandes", "weekly")
    ds = _weekly(city_settings)
    var = ds["food_aid_requests"]
    both = var.sel(territory=RENNES).values + var.sel(territory=BRUZ).values
    observed = food["observed"]
    shown = np.array(observed["values"], dtype=float)
    np.testing.assert_array_equal(shown, both[np.isfinite(both)])
    covered = float(ds["population"].sel(territory=[RENNES, BRUZ]).sum())
    np.testing.assert_allclose(np.array(observed["per_100k"], dtype=float),
                               shown / covered * 1e5)
    coverage = observed["coverage"]
    assert coverage["partial"] is True and coverage["members"] == 43
    assert coverage["reporting"] == 2 and 0.5 < coverage["population_share"] < 0.53
    # Forecast 1-4 weeks ahead from the day after the last week, and the verdict in French.
    forecast = food["forecast"]
    assert forecast["available"], forecast
    assert forecast["horizons"] == [1, 2, 3, 4] and forecast["model"] == "baseline"
    assert forecast["dates"][0] > observed["dates"][-1]
    assert all(lo <= mid <= hi for lo, mid, hi in
               zip(forecast["q05"], forecast["q50"], forecast["q95"], strict=True))
    assert food["horizons"] == ["à 1 semaine", "à 2 semaines", "à 3 semaines", "à 4 semaines"]
    verdict = food["verdict"]
    assert verdict["status"] in ("beats_baseline", "mixed", "does_not_beat_baseline",
                                 "not_scored")
    assert "référence naïve" in verdict["text"] or "Pas encore évalué" in verdict["text"]


def test_epci_page_shows_its_metropole_incidence_and_departement_pressure(
        client, analyst) -> None:
    body = _page_data(client, RENNES_METROPOLE, analyst)
    incidence = body["incidence"]
    assert incidence["available"] and incidence["territory"] == RENNES_METROPOLE
    assert incidence["series"][0]["indicator"] == "incidence_rate_7d"
    pressure = body["pressure"]
    assert pressure["available"] and (pressure["territory"], pressure["name"]) == \
        ("35", "Ille-et-Vilaine")
    panels = {p["key"]: p for p in pressure["panels"]}
    assert panels["icu"]["observed"]["available"] and panels["icu"]["forecast"]["available"]
    assert panels["icu"]["capacity"]["value"] > 0
    assert panels["hosp"]["forecast"]["available"]
    alert = pressure["alert"]
    assert alert["available"] and alert["message"].startswith("Ille-et-Vilaine")
    # The capacity line is the one the alert compares with (in force on the forecast date).
    assert panels["icu"]["capacity"]["value"] == alert["capacity"]
    assert panels["icu"]["capacity"]["date"] <= panels["icu"]["forecast"]["forecast_date"]
    assert alert["level"] in ("green", "yellow", "orange", "red")
    unemployment = body["unemployment"]
    assert unemployment["observed"]["available"] and unemployment["forecast"]["available"]
    assert unemployment["verdict"]["text"]


def test_a_commune_page_needs_a_token_for_its_own_data(client, analyst) -> None:
    public = _page_data(client, BRUZ)
    assert public["territory"]["epci"] == {"code": RENNES_METROPOLE, "name": "Rennes Métropole"}
    for indicator in public["indicators"]:
        observed = indicator["observed"]
        assert observed["available"] is False and observed["code"] == "aggregated_only"
        assert "jeton" in observed["reason"]
    # Its métropole's incidence and its département's pressure are public.
    assert public["incidence"]["available"] and public["pressure"]["available"]
    mine = _page_data(client, BRUZ, analyst)
    assert {i["indicator"] for i in mine["indicators"]} == set(CITY_INDICATORS)
    assert all(i["observed"]["available"] and i["observed"]["coverage"] is None
               for i in mine["indicators"])
    # No forecast of communes was published here: said in French, in a 200.
    assert all(not i["forecast"]["available"] and i["forecast"]["reason"]
               for i in mine["indicators"])


def test_small_epci_counts_stay_hidden_from_the_public(client, analyst) -> None:
    public = {i["indicator"]: i for i in _page_data(client, RENNES_METROPOLE)["indicators"]}
    full = {i["indicator"]: i for i in
            _page_data(client, RENNES_METROPOLE, analyst)["indicators"]}
    calls = public["emergency_housing_calls_115"]["observed"]
    assert calls["threshold"] == 10
    values = [v for v in calls["values"] if v is not None]
    assert all(v >= 10 for v in values)
    assert all(r is None for v, r in zip(calls["values"], calls["per_100k"], strict=True)
               if v is None)
    assert full["emergency_housing_calls_115"]["observed"]["suppressed"] == 0


def test_page_data_is_french(client, analyst) -> None:
    found = []
    for code in (RENNES_METROPOLE, BRUZ, RENNES, "200046977"):
        for headers in ({}, analyst):
            for text in displayed_strings(_page_data(client, code, headers)):
                found += [f"{code}: {p}" for p in problems(text)]
    assert found == [], found[:20]


def test_city_directory_and_search_work_without_script(client) -> None:
    response = client.get("/ville")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert problems(visible_text(re.sub(r"<datalist.*?</datalist>", "", html, flags=re.S))) \
        == []
    # Every EPCI of the registry is offered while typing; the métropoles are listed.
    options = re.findall(r'<option value="[^"]+ \((\d{9})\)">', html)
    assert len(set(options)) == 1255
    table = re.search(r'<table id="epci-table">.*?</table>', html, re.S).group(0)
    assert f'href="/ville/{RENNES_METROPOLE}"' in table and 'href="/ville/200046977"' in table
    assert 'id="city-form" action="/ville" method="get"' in html
    one = client.get("/ville?q=rennes+m%C3%A9tropole")
    assert one.status_code == 302 and one.headers["Location"].endswith(f"/ville/{RENNES_METROPOLE}")
    by_code = client.get("/ville?q=Bruz+%2835047%29")
    assert by_code.headers["Location"].endswith(f"/ville/{BRUZ}")
    several = client.get("/ville?q=Rennes").get_data(as_text=True)
    links = re.findall(r'<li><a href="/ville/(\w+)">', several)
    assert links[:2] == [RENNES, RENNES_METROPOLE]
    none = client.get("/ville?q=zzzzzz").get_data(as_text=True)
    assert "Aucune intercommunalité ni commune ne correspond" in none
    dep = client.get("/ville?departement=35").get_data(as_text=True)
    assert "Intercommunalités du département (18)" in dep


@pytest.mark.parametrize("query", ["\x00\x1f<script>alert(1)</script>", "%" * 5000,
                                   "' OR 1=1 --", "../../etc/passwd"])
def test_forged_searches_are_answered_plainly(client, query: str) -> None:
    response = client.get("/ville", query_string={"q": query})
    # A control character is refused before any page (service.guards); the rest is searched.
    assert response.status_code == (400 if "\x00" in query else 200)
    html = response.get_data(as_text=True)
    assert "<script>alert" not in html and "\x00" not in html


@pytest.mark.parametrize("code", ["999999999", "35238x", "FR", "35", "x" * 300])
def test_unknown_city_is_a_french_404(client, code: str) -> None:
    page = client.get(f"/ville/{code}")
    assert page.status_code == 404
    assert "Ville inconnue" in page.get_data(as_text=True)
    assert client.get(f"/tableau/donnees/ville/{code}").status_code == 404


def test_city_page_links_and_territory_pages_link_back(client) -> None:
    html = client.get(f"/ville/{BRUZ}").get_data(as_text=True)
    assert problems(visible_text(re.sub(r"<datalist.*?</datalist>", "", html, flags=re.S))) \
        == []
    assert f'href="/ville/{RENNES_METROPOLE}"' in html and 'href="/territoire/35"' in html
    assert 'href="/ville"' in html  # navigation
    assert f'href="/ville/{RENNES_METROPOLE}"' in client.get(
        f"/territoire/{RENNES_METROPOLE}").get_data(as_text=True)
    assert 'href="/ville?departement=35"' in client.get("/territoire/35").get_data(as_text=True)


def test_a_city_token_reads_its_own_commune_and_only_it(client, city_settings) -> None:
    """A token scoped to Rennes (role ``city``) reads Rennes's own series unsuppressed, not
    Bruz's (another commune of the same EPCI), and the EPCI's sums as the public does."""
    from features.catalog import get_engine
    from service.auth import create_token

    token = create_token(get_engine(city_settings.database_url), "city-page-rennes", "city",
                         territories=[RENNES])
    headers = {"Authorization": f"Bearer {token}"}
    rennes = _page_data(client, RENNES, headers)
    assert {i["indicator"] for i in rennes["indicators"]} == set(CITY_INDICATORS)
    observed = {i["indicator"]: i["observed"] for i in rennes["indicators"]}
    assert observed["food_aid_requests"]["suppressed"] == 0
    # Rennes's 115 calls would give back Bruz's small counts (EPCI − Rennes): the scope reads
    # them as the public does (features.disclosure.scopes), small values still hidden.
    calls = observed["emergency_housing_calls_115"]
    assert calls["available"] and calls["suppressed"] > 0
    assert all(v >= 10 for v in calls["values"] if v is not None)
    var = _weekly(city_settings)["food_aid_requests"].sel(territory=RENNES).values
    food = next(i for i in rennes["indicators"] if i["indicator"] == "food_aid_requests")
    np.testing.assert_array_equal(np.array(food["observed"]["values"], dtype=float),
                                  var[np.isfinite(var)])
    bruz = _page_data(client, BRUZ, headers)
    assert all(i["observed"]["code"] == "aggregated_only" for i in bruz["indicators"])
    calls = next(i for i in _page_data(client, RENNES_METROPOLE, headers)["indicators"]
                 if i["indicator"] == "emergency_housing_calls_115")["observed"]
    assert all(v >= 10 for v in calls["values"] if v is not None)


def test_before_the_first_ingest_the_city_pages_say_so(tmp_path) -> None:
    from service.app import create_app

    settings = Settings.from_env(home=str(tmp_path / "empty"), data_dir=str(tmp_path),
                                 database_url=f"sqlite:///{tmp_path}/vigie.sqlite")
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    for path, status in (("/ville", 200), (f"/ville/{RENNES_METROPOLE}", 503)):
        response = client.get(path)
        assert response.status_code == status
        text = visible_text(response.get_data(as_text=True))
        assert "Aucune donnée n'a encore été chargée" in text and problems(text) == []


def test_territory_page_offers_every_other_target_forecast_there(client, city_settings) -> None:
    """Any target with a stored forecast at a département is drawn on its Territoire page
    (« Autres prévisions »): Ille-et-Vilaine's food-aid requests (summed from Rennes and
    Bruz), in French, with observations, forecast and the verdict; none where no other target
    is forecast; a forged or unknown target is a French 404."""
    data = client.get("/tableau/donnees/territoire/35").get_json()
    others = data["others"]
    assert [(o["target"], o["frequency"]) for o in others] == [("food_aid_requests", "weekly")]
    assert others[0]["label"] == "Demandes d'aide alimentaire" and others[0]["published"]
    assert not problems(" ".join(displayed_strings(others)))
    view = client.get("/tableau/donnees/territoire/35/prevision?cible=food_aid_requests"
                      "&frequence=weekly").get_json()
    assert view["observed"]["available"] and view["forecast"]["available"]
    assert len(view["forecast"]["dates"]) == 4 and view["forecast"]["model"] == "baseline"
    summed = _weekly(city_settings)["food_aid_requests"].sel(territory="35").values
    assert view["observed"]["values"][-1] == summed[np.isfinite(summed)][-1]
    shown = {k: v for k, v in view.items() if k not in ("indicator", "frequency")}
    assert not problems(" ".join(displayed_strings(shown)))
    assert client.get("/tableau/donnees/territoire/69").get_json()["others"] == []
    # A target with no forecast here is drawn with a French reason (none of it in this home).
    hosp = client.get("/tableau/donnees/territoire/35/prevision?cible=inc_hosp"
                      "&frequence=weekly").get_json()
    assert hosp["observed"]["available"] and not hosp["forecast"]["available"]
    assert not problems(hosp["forecast"]["reason"])
    for query, status in (("cible=food_aid_requests&frequence=daily", 404),
                          ("cible=%3Cscript%3E&frequence=weekly", 404), ("cible=&frequence=", 404),
                          ("cible=food_aid_requests&frequence=weekly%00", 400)):
        response = client.get(f"/tableau/donnees/territoire/35/prevision?{query}")
        assert response.status_code == status, query
    assert client.get("/tableau/donnees/territoire/ZZ/prevision?cible=food_aid_requests"
                      "&frequence=weekly").status_code == 404
