"""Issue 12 on the dashboard's server side: the epidemic-signal panels of the Territoire page,
EPCI pages, on the synthetic signals cube (``signals_client``)."""

from __future__ import annotations

import os
import time
from html import unescape

import pandas as pd
import pytest

from tests.synthetic_cube import signals_cube

KEYS = ["incidence", "positivity", "rt", "growth", "variants", "vaccination"]


@pytest.fixture(scope="module")
def cube():
    return signals_cube()["daily"]


def _panels(client, code: str) -> dict:
    r = client.get(f"/tableau/donnees/signaux/{code}")
    assert r.status_code == 200, r.data[:300]
    return {p["key"]: p for p in r.get_json()["panels"]}


def _series(panel: dict, name: str) -> dict:
    return next(s for s in panel["series"] if s["indicator"] == name)


def test_france_has_every_signal_with_the_cube_values(signals_client, cube):
    panels = _panels(signals_client, "FR")
    assert list(panels) == KEYS
    assert all(p["available"] and p["missing"] is None for p in panels.values())
    inc = _series(panels["incidence"], "incidence_rate_7d")
    expected = cube["incidence_rate_7d"].sel(territory="FR").to_series().dropna()
    assert inc["dates"] == [d.strftime("%Y-%m-%d") for d in expected.index]
    assert inc["values"] == pytest.approx(expected.to_list(), abs=5e-4)  # 3 decimals
    assert inc["suppressed"] == 0
    rt = panels["rt"]
    roles = {s["indicator"]: s["role"] for s in rt["series"]}
    assert roles == {"rt": "line", "rt_lower": "lower", "rt_upper": "upper",
                     "epidemic_basis": "text"}
    assert set(_series(rt, "epidemic_basis")["values"]) == {1.0}  # France: from cases
    lower, upper = _series(rt, "rt_lower")["values"], _series(rt, "rt_upper")["values"]
    assert all(lo < r < hi for lo, r, hi in zip(lower, _series(rt, "rt")["values"], upper,
                                                strict=True))
    doubling = _series(panels["growth"], "doubling_time")
    assert doubling["available"] and min(doubling["values"]) < 0 < max(doubling["values"])


def test_a_departement_says_it_has_no_daily_incidence(signals_client):
    panels = _panels(signals_client, "69")
    assert not panels["incidence"]["available"] and not panels["positivity"]["available"]
    assert "Pas de taux d'incidence quotidien" in panels["incidence"]["missing"]
    assert "Bourgogne-Franche-Comté" in panels["positivity"]["missing"]
    # R(t) from admissions, vaccination by département: shown.
    assert panels["rt"]["available"] and panels["vaccination"]["available"]
    assert set(_series(panels["rt"], "epidemic_basis")["values"]) == {2.0}
    body = signals_client.get("/tableau/donnees/signaux/69").get_json()
    assert body["parent"]["code"] == "R84"


def test_small_regions_rates_are_hidden_over_hidden_cases(signals_client, signals_token):
    """Corsica's daily cases are often below 10 (hidden): its 7-day incidence is hidden on the
    days whose window holds a hidden day (× population it gives the 7-day sum back,
    docs/DISCLOSURE.md), shown on the others; a token shows everything."""
    panels = _panels(signals_client, "R94")
    inc = _series(panels["incidence"], "incidence_rate_7d")
    assert inc["available"] and inc["suppressed"] == inc["values"].count(None) > 0
    assert any(v is not None for v in inc["values"])
    cases = signals_client.get("/api/v1/data?indicator=inc_cases&territory=R94&per_page=1000")
    hidden = pd.DatetimeIndex([i["date"] for i in cases.get_json()["items"] if i["suppressed"]])
    for day, value in zip(inc["dates"], inc["values"], strict=True):
        day = pd.Timestamp(day)
        if ((hidden <= day) & (hidden > day - pd.Timedelta(days=7))).any():
            assert value is None, day
    r = signals_client.get("/tableau/donnees/signaux/R94", headers=signals_token)
    inc = _series({p["key"]: p for p in r.get_json()["panels"]}["incidence"],
                  "incidence_rate_7d")
    assert inc["suppressed"] == 0 and None not in inc["values"] and min(inc["values"]) < 10


def test_epci_page_and_panels(signals_client):
    html = signals_client.get("/territoire/200046977").get_data(as_text=True)
    assert "Métropole de Lyon" in html
    for key in KEYS:
        assert f'id="chart-{key}"' in html
    assert _panels(signals_client, "200046977")["rt"]["source"].startswith("Calcul de Vigie")
    risk = signals_client.get("/tableau/donnees/signaux/200046977").get_json()["risk"]
    api = signals_client.get("/api/v1/risk?territory=200046977").get_json()["items"][0]
    assert risk["available"] and (risk["level"], risk["label"], risk["date"]) == (
        api["level"], api["label"], api["date"])
    reached = [c for c in api["criteria"] if c["level"] == api["level"]]
    assert len(risk["met"]) == len(reached) and all(" > " in m for m in risk["met"])
    # Reachable from the picker on any page, since it has data.
    assert 'value="200046977"' in signals_client.get("/territoire/FR").get_data(as_text=True)
    panels = _panels(signals_client, "200046977")
    assert panels["incidence"]["available"]
    assert [s["available"] for s in panels["incidence"]["series"]
            if s["role"] == "line"] == [True, True]  # 65+ too
    assert not panels["vaccination"]["available"]
    data = signals_client.get("/tableau/donnees/territoire/200046977").get_json()
    by_key = {p["key"]: p for p in data["panels"]}
    assert by_key["admissions"]["forecast"]["available"] is False
    assert "pas de prévision" in by_key["admissions"]["forecast"]["reason"]
    assert by_key["er"]["territory"] == "R84"  # SurSaUD: the région above the EPCI's département


def test_signals_sit_next_to_admissions_on_the_page(signals_client):
    html = signals_client.get("/territoire/69").get_data(as_text=True)
    order = [html.index(f'id="panel-{k}"') for k in ["admissions", *KEYS, "beds", "icu", "er"]]
    assert order == sorted(order)
    assert "js/signals.js" in html and 'data-parent="R84"' in html
    assert signals_client.get("/tableau/donnees/signaux/nope").status_code == 404
    assert signals_client.get("/territoire/nope").status_code == 404


def test_real_cube_signals(client):
    """On the real cube: France has every signal; Rhône has no daily incidence but R(t) from
    admissions; Côte-d'Or (BFC) has its published incidence and positivity; Lyon's métropole
    has a page."""
    france = _panels(client, "FR")
    assert all(p["available"] for p in france.values()), {
        k: p["missing"] for k, p in france.items()}
    basis = _series(france["rt"], "epidemic_basis")["values"]
    assert 1.0 in basis  # France: from cases while SI-DEP publishes them
    rhone = _panels(client, "69")
    assert rhone["incidence"]["available"] and rhone["incidence"]["estimated"]  # see below
    assert rhone["rt"]["available"] and rhone["vaccination"]["available"]
    assert set(_series(rhone["rt"], "epidemic_basis")["values"]) <= {0.0, 2.0}
    cote_dor = _panels(client, "21")
    assert cote_dor["incidence"]["available"] and cote_dor["positivity"]["available"]
    assert client.get("/territoire/200046977").status_code == 200
    assert 'value="200046977"' in client.get("/territoire/FR").get_data(as_text=True)


def test_overview_offers_colouring_by_risk_level(signals_client):
    from features.risk import LEVEL_LABELS

    html = signals_client.get("/").get_data(as_text=True)
    assert "Colorer par" in html and 'value="risk"' in html and 'value="capacity"' in html
    for label in LEVEL_LABELS.values():
        assert label in html  # the French legend of the risk levels
    assert html.count('data-risk="-1"') >= 101  # every tile starts unknown
    body = signals_client.get("/tableau/donnees/ensemble").get_json()
    risk = body["risk"]
    assert risk["available"] and risk["levels"]["3"] == "Alerte maximale"
    assert set(risk["items"]) == {"01", "69", "2A"}
    item = risk["items"]["69"]
    assert item["level"] in (0, 1, 2, 3) and item["message"].startswith("69 : ")
    # Missing inputs named in French (départements have no daily incidence).
    assert "Taux d'incidence sur 7 jours" in item["missing"]
    assert risk["first_date"] == "2020-09-01" and risk["last_date"] == risk["date"]
    other = signals_client.get("/tableau/donnees/risque?date=2020-12-15").get_json()
    assert other["available"] and other["date"] == "2020-12-15"
    assert all(i["date"] == "2020-12-15" for i in other["items"].values())
    beyond = signals_client.get("/tableau/donnees/risque?date=2035-01-01").get_json()
    assert beyond["available"] is False and beyond["status"] == 400


def test_methods_page_cites_the_risk_source_and_thresholds(signals_client):
    from features.risk import describe, load_thresholds

    described = describe(load_thresholds())
    html = unescape(signals_client.get("/methodes").get_data(as_text=True))
    assert "Niveau de risque" in html and 'id="risk-thresholds"' in html
    assert described["source"]["citation"][:60] in html
    for url in described["source"]["urls"]:
        assert url in html
    for level in described["levels"]:
        for c in level["criteria"]:
            assert f"{c['label']} > {c['threshold']:g}" in html
    assert "Indicateurs épidémiques" in html and "SI-DEP" in html and "VAC-SI" in html
    assert "Taux d'incidence sur 7 jours<br><code>incidence_rate_7d</code>" in html


def test_methods_page_shows_configured_thresholds(signals_settings, tmp_path, api_clock):
    """Thresholds are configuration (VIGIE_RISK_THRESHOLDS): the page shows the file in force."""
    import dataclasses

    from features.risk import DEFAULT_THRESHOLDS
    from service.app import create_app

    custom = tmp_path / "seuils.yaml"
    custom.write_text(DEFAULT_THRESHOLDS.read_text(encoding="utf-8")
                      .replace("name: zones_alerte_2020_09_23", "name: seuils_locaux")
                      .replace("incidence_rate_7d: 250", "incidence_rate_7d: 400"),
                      encoding="utf-8")
    settings = dataclasses.replace(signals_settings, risk_thresholds=custom)
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    html = unescape(client.get("/methodes").get_data(as_text=True))
    assert "seuils_locaux" in html and "Taux d'incidence sur 7 jours > 400" in html
    assert client.get("/api/v1/risk?level=region").get_json()["thresholds"] == "seuils_locaux"
    # Edited while serving: the next answer (after the 1 s freshness window) uses the new file.
    custom.write_text(custom.read_text(encoding="utf-8").replace("seuils_locaux", "seuils_v2"),
                      encoding="utf-8")
    os.utime(custom, (time.time() + 5, time.time() + 5))
    api_clock.advance(1.1)
    assert client.get("/api/v1/risk?level=region").get_json()["thresholds"] == "seuils_v2"
    custom.write_text("levels: [1, 2]\n", encoding="utf-8")
    broken = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    assert "ne sont pas utilisables" in broken.get("/methodes").get_data(as_text=True)


def _dates_values(cube, name: str, code: str) -> tuple[list[str], list[float]]:
    series = cube[name].sel(territory=code).to_series().dropna()
    return [d.strftime("%Y-%m-%d") for d in series.index], series.to_list()


def test_real_departement_incidence_is_the_estimate_said_so_with_its_region(client,
                                                                           api_settings):
    """Rhône has no daily cases: its incidence panel draws incidence_rate_7d_estimated (from
    2021-06-06), says it is an estimate and how it is made, and draws Auvergne-Rhône-Alpes'
    own incidence beside it; France draws its own, with no estimate."""
    from features.store import open_cube

    cube = open_cube("daily", settings=api_settings)
    panel = _panels(client, "69")["incidence"]
    assert panel["available"] and panel["missing"] is None and panel["estimated"]
    note = panel["estimate_note"]
    assert note.startswith("Taux estimé par Vigie") and "criblage" in note and \
        "de sa région" in note and "100\u202f000 habitants" in note
    assert "estimation de Vigie" in panel["source"]
    own = _series(panel, "incidence_rate_7d")
    assert own["role"] == "line" and not own["available"]
    estimate = _series(panel, "incidence_rate_7d_estimated")
    assert estimate["role"] == "estimate" and "estimé" in estimate["label"]
    dates, values = _dates_values(cube, "incidence_rate_7d_estimated", "69")
    assert estimate["dates"] == dates and dates[0] == "2021-06-06"
    # Hidden on the days the Rhône's screened tests behind it are (docs/DISCLOSURE.md).
    shown = [(v, w) for v, w in zip(estimate["values"], values, strict=True) if v is not None]
    assert len(shown) == len(values) - estimate["suppressed"] and shown
    assert [v for v, _ in shown] == pytest.approx([w for _, w in shown], abs=5e-4)
    [region] = [s for s in panel["series"] if s["role"] == "comparison"]
    assert region["territory"] == "R84" and region["indicator"] == "incidence_rate_7d"
    assert region["label"] == "Auvergne-Rhône-Alpes : taux de la région"
    dates, values = _dates_values(cube, "incidence_rate_7d", "R84")
    shown = [(v, w) for v, w in zip(region["values"], values, strict=True) if v is not None]
    assert region["dates"] == dates and len(shown) == len(values) - region["suppressed"]
    assert [v for v, _ in shown] == pytest.approx([w for _, w in shown], abs=5e-4)
    # Côte-d'Or: its published rate, then the estimate on other days (never both on a day).
    cote_dor = _panels(client, "21")["incidence"]
    published, estimated = (_series(cote_dor, n) for n in ("incidence_rate_7d",
                                                            "incidence_rate_7d_estimated"))
    assert published["available"] and estimated["available"] and cote_dor["estimated"]
    assert published["dates"][-1] < estimated["dates"][0]
    # France: its own incidence, no estimate, no comparison line.
    france = _panels(client, "FR")["incidence"]
    assert not france["estimated"] and france["estimate_note"] is None
    assert not _series(france, "incidence_rate_7d_estimated")["available"]
    assert not [s for s in france["series"] if s["role"] == "comparison"]


def test_neither_incidence_nor_estimate_keeps_the_no_data_message(signals_client):
    """The synthetic cube has no estimate: a département there has neither, said in words."""
    panel = _panels(signals_client, "01")["incidence"]
    assert not panel["available"] and not panel["estimated"]
    assert panel["missing"].startswith("Pas de taux d'incidence quotidien pour ce territoire")
    assert "estime pour les départements à partir du criblage" in panel["missing"]
    assert [s["role"] for s in panel["series"]] == ["line", "line", "estimate"]
