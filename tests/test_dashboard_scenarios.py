"""The Scénarios page says, in French, where each run's R now came from (confirmed cases, whose,
or hospital admissions, with the reason when it fell back), R from admissions beside it, and the
vaccination and variant levers used; the scenario API serves ``r_basis``,
``r_now_admissions`` and ``levers``."""

from __future__ import annotations

import re
from html import unescape

import numpy as np
import pytest

from tests.api_fixtures import home_sharing

#: English words of the engine's notes and priors that must never reach the page.
ENGLISH = re.compile(r"\b(cases|admissions|kept|of the|too few|do not cover|values|whole|"
                     r"over Alpha|assumed|transmissible|given in)\b")


@pytest.fixture(scope="module")
def runs(real_cube, tmp_path_factory):
    """A home on the real cube with two finished runs: the Delta wave with vaccination (FR,
    Rhône, Mayotte) and a status quo on 20 May 2020, before SI-DEP covers a window."""
    from features.catalog import get_engine
    from scenarios import load_library_scenario
    from service.app import create_app
    from service.auth import create_token
    from service.jobs import run_pending

    settings = home_sharing(real_cube, tmp_path_factory.mktemp("scenario_text_home"))
    engine = get_engine(settings.database_url)
    headers = {role: {"Authorization": "Bearer " + create_token(engine, role, role)}
               for role in ("analyst", "planner")}
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    ids = {}
    for key, name, territories, as_of in (
            ("levers", "vaccination_delta_2021_06", ["FR", "69", "976"], None),
            ("early", "status_quo", ["69", "R84"], "2020-05-20")):
        definition = load_library_scenario(name)
        definition = {k: v for k, v in definition.items() if not k.startswith("_")}
        definition.update(territories=territories, n_samples=100)
        body = {"definition": definition, **({"as_of": as_of} if as_of else {})}
        r = client.post("/api/v1/scenarios/runs", json=body, headers=headers["planner"])
        assert r.status_code == 202, r.get_json()
        ids[key] = r.get_json()["run_id"]
    assert {s for _, s in run_pending(engine, settings)} == {"ok"}
    return client, headers, ids


def test_api_serves_r_basis_r_from_admissions_and_levers(runs):
    client, headers, ids = runs
    run = client.get(f"/api/v1/scenarios/runs/{ids['levers']}",
                     headers=headers["analyst"]).get_json()
    assert set(run["levers"]) == {"vaccination", "variant"}
    assert run["levers"]["vaccination"]["coverage_now"]["69"] > 30
    assert run["levers"]["variant"]["share_indicator"] == "variant_share_l452r"
    rhone = run["summary"]["69"]
    assert set(rhone["r_basis"]) == {"basis", "source", "r_source", "shrink", "note"}
    assert rhone["r_basis"]["basis"] == "cases" and rhone["r_basis"]["source"] == "R84"
    assert set(rhone["r_now_admissions"]) == {"q05", "median", "q95"}
    early = client.get(f"/api/v1/scenarios/runs/{ids['early']}",
                       headers=headers["analyst"]).get_json()
    assert early["levers"] == {}
    assert early["summary"]["69"]["r_basis"]["basis"] == "admissions"
    assert "do not cover" in early["summary"]["69"]["r_basis"]["note"]
    # Listing: no summary or levers read; comparison: that territory's summary and the levers.
    listed = client.get("/api/v1/scenarios/runs", headers=headers["analyst"]).get_json()
    assert all(i["levers"] is None and i["summary"] is None for i in listed["items"])
    cmp = client.get(f"/api/v1/scenarios/compare?runs={ids['levers']},{ids['early']}"
                     "&territory=69", headers=headers["analyst"]).get_json()
    assert [set(r["levers"]) for r in cmp["runs"]] == [{"vaccination", "variant"}, set()]
    assert cmp["runs"][0]["summary"]["r_basis"]["source"] == "R84"
    spec = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert "levers" in spec["ScenarioRun"]["required"]
    assert "r_basis" in spec["ScenarioRun"]["properties"]["summary"]["description"]


def _text(client, headers, run_id: int) -> dict:
    body = client.get(f"/tableau/donnees/execution/{run_id}", headers=headers).get_json()
    assert body["available"], body
    return body["territories"]


def test_page_data_says_where_r_now_came_from_and_the_levers(runs):
    client, headers, ids = runs
    api = client.get(f"/api/v1/scenarios/runs/{ids['levers']}",
                     headers=headers["analyst"]).get_json()["summary"]
    text = _text(client, headers["analyst"], ids["levers"])
    france, rhone = text["FR"], text["69"]
    assert france["basis"] == "cases"
    assert france["text"] == ("R actuel estimé à partir des cas confirmés (tests positifs SI-DEP) "
                              "de la France.")
    assert rhone["text"].startswith("R actuel estimé à partir des cas confirmés de sa région, "
                                    "Auvergne-Rhône-Alpes (R84), dont le R des cas est ")
    kept = round(100 * api["69"]["r_basis"]["shrink"])
    assert f"conservé à {kept} %" in rhone["text"] and "hospitalisations" in rhone["text"]
    median = api["69"]["r_now_admissions"]["median"]
    assert rhone["r_now_admissions"].startswith(f"{median:.2f}".replace(".", ","))
    assert rhone["r_now_median"] == api["69"]["r_now"]["median"]
    vaccination, variant = rhone["levers"]
    assert vaccination.startswith("Vaccination : couverture (au moins une dose) de ")
    assert "portée à 70,0 % le 31/08/2021" in vaccination and "Paireau et al. 2023" in vaccination
    assert "connu a posteriori" in vaccination
    assert variant.startswith("Variant delta : transmissibilité supérieure de 79 %")
    assert "par rapport au variant Alpha, Alizon et al. 2021" in variant
    assert "des tests positifs criblés de Rhône (69) — mutation L452R" in variant
    # Mayotte: whatever R now came from, said in French, with the reason when it fell back.
    mayotte = text["976"]
    assert mayotte["text"].startswith("R actuel estimé à partir des ")
    assert (mayotte["note"] is None) == (api["976"]["r_basis"]["note"] is None)
    for entry in text.values():
        for words in (entry["text"], *entry["levers"]):
            assert not ENGLISH.search(words), words


def test_fall_back_to_admissions_is_said_with_its_reason(runs):
    client, headers, ids = runs
    text = _text(client, headers["analyst"], ids["early"])
    rhone, region = text["69"], text["R84"]
    assert rhone["basis"] == region["basis"] == "admissions"
    assert region["text"] == (
        "R actuel estimé à partir des hospitalisations d'Auvergne-Rhône-Alpes (R84). Les cas "
        "confirmés n'ont pas servi : les cas quotidiens d'Auvergne-Rhône-Alpes (R84) ne "
        "couvrent pas les 27 derniers jours (données du 13/05/2020 au 19/05/2020).")
    assert rhone["text"].startswith("R actuel estimé à partir des hospitalisations de sa "
                                    "région, Auvergne-Rhône-Alpes (R84)")
    assert rhone["note"] == region["note"] and rhone["levers"] == []


def test_page_data_follows_the_callers_rights(runs):
    client, headers, ids = runs
    public = client.get(f"/tableau/donnees/execution/{ids['levers']}").get_json()
    assert public["available"] is False and public["status"] == 401
    missing = client.get("/tableau/donnees/execution/999999",
                         headers=headers["analyst"]).get_json()
    assert missing["available"] is False and missing["status"] == 404


def test_scenarios_page_has_the_r_columns_and_french_titles(runs):
    from scenarios import list_library
    from scenarios.schema import load_definition
    from service.dashboard.messages import thin

    client, _, _ = runs
    html = unescape(client.get("/scenarios").get_data(as_text=True))
    assert ">R actuel</th>" in html and ">R des hospitalisations</th>" in html
    assert 'id="compare-r"' in html
    for item in list_library():
        definition = load_definition(item["path"])
        assert thin(definition["title_fr"]) in html, item["name"]
        assert thin(definition["description_fr"].strip()) in html, item["name"]


# -- every note the R-now estimator writes has French words (synthetic cubes) -------------
def test_every_fall_back_note_is_translated():
    from scenarios.params import EpiParameters
    from scenarios.rnow import estimate_r_now
    from service.dashboard.scenario_text import note_fr
    from tests.scenario_helpers import synthetic_daily, with_cases

    w = EpiParameters().generation_interval()
    cube = synthetic_daily(end="2020-10-24")
    r_cases = {"R84": 1.3, "R11": 1.1}
    short = cube.copy()
    hosp = short["inc_hosp"].values.copy()
    hosp[list(short["territory"].values).index("R11"), -3:] = np.nan
    short["inc_hosp"] = (("territory", "date"), hosp)
    cases = {
        "no daily cases in the cube": (cube, "le cube ne contient aucun cas quotidien"),
        "do not cover": (with_cases(cube, r_cases, start="2020-10-15"),
                         "les cas quotidiens d'Auvergne-Rhône-Alpes (R84) ne couvrent pas les "
                         "27 derniers jours (données du 15/10/2020 au 24/10/2020)"),
        "no value": (with_cases(cube, r_cases, start="2021-01-01"),
                     "ne couvrent pas les 27 derniers jours (aucune donnée)"),
        "too few cases": (with_cases(cube, {"R84": 1.0, "R11": 1.0}, level=5.0),
                          "trop peu de cas pour Auvergne-Rhône-Alpes (R84) ("),
        "too few or incomplete": (short, "les hospitalisations d'Île-de-France (R11) sont trop "
                                         "peu nombreuses ou incomplètes sur les 27 derniers "
                                         "jours : le R des hospitalisations de Paris (75) est "
                                         "gardé"),
    }
    names = {"R84": "Auvergne-Rhône-Alpes", "R11": "Île-de-France", "75": "Paris",
             "69": "Rhône"}
    for english, (ds, french) in cases.items():
        code = "75" if english == "too few or incomplete" else "69"
        parent = "R11" if code == "75" else "R84"
        now = estimate_r_now(ds, [code], ["department"], [parent], w)
        assert english in now.note[0], (english, now.note)
        words = note_fr(now.note[0], names)
        assert french in words, (english, words)
        assert not ENGLISH.search(words), words
