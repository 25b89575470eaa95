"""Issue 12 through the API: the leading signals and epidemic indicators in the listing and the
data endpoint (JSON and CSV), their suppression for the public, the EPCI level.

On the synthetic signals cube (``signals_client``: exact expected values, no ingest); the same
endpoints on the real cube are checked in ``test_api_signals_real``."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from tests.synthetic_cube import signals_cube

RATES = ("incidence_rate_7d", "positivity_rate_7d", "vaccination_coverage_dose1", "rt",
         "rt_lower", "rt_upper", "growth_rate", "doubling_time", "variant_share_l452r")
COUNTS = ("inc_cases", "inc_tests", "screened_positive_tests")


@pytest.fixture(scope="module")
def cube():
    return signals_cube()


def test_indicator_listing_has_french_labels_and_units(signals_client):
    items = signals_client.get("/api/v1/indicators?per_page=1000").get_json()["items"]
    entries = {(i["name"], i["frequency"]): i for i in items}
    inc = entries[("incidence_rate_7d", "daily")]
    assert inc["label"] == "Taux d'incidence sur 7 jours"
    assert inc["units_fr"] == "cas pour 100 000 habitants"
    assert inc["units"] == "positives/100,000 inhabitants/7 days" and inc["count"] is False
    assert entries[("rt", "daily")]["label"].startswith("Nombre de reproduction")
    assert entries[("positivity_rate_7d", "daily")]["units_fr"] == "%"
    assert entries[("vaccination_coverage_dose1", "daily")]["units_fr"] == "% de la population"
    assert entries[("doubling_time", "daily")]["units_fr"] == "jours"
    assert "Delta" in entries[("variant_share_l452r", "daily")]["label"]
    for name in COUNTS:
        assert entries[(name, "daily")]["count"] is True, name
    assert entries[("inc_cases", "weekly")]["label"] == "Personnes testées positives"
    one = signals_client.get("/api/v1/indicators/growth_rate").get_json()
    assert one["label"] == "Taux de croissance quotidien" and one["units_fr"] == "par jour"
    # CSV of the listing carries the French columns (French Excel dialect).
    text = signals_client.get("/api/v1/indicators?format=csv&sep=;").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert {"label", "units_fr"} <= set(rows[0])
    assert any(r["label"] == "Taux de positivité des tests sur 7 jours" for r in rows)


@pytest.mark.parametrize("name", RATES)
def test_rates_and_rt_are_hidden_only_over_hidden_counts(signals_client, signals_token, cube,
                                                         name):
    """A rate below the threshold (R(t) is about 1) identifies nobody: shown to the public,
    except where a count it is computed from is hidden (rate × population, or R(t)'s
    interval, would give that count back: docs/DISCLOSURE.md)."""
    url = f"/api/v1/data?indicator={name}&per_page=1000"
    body = signals_client.get(url).get_json()
    private = signals_client.get(url, headers=signals_token).get_json()
    assert body["count"] is False and private["suppression_threshold"] is None
    assert not any(i["suppressed"] for i in private["items"])
    shown = [i for i in body["items"] if not i["suppressed"]]
    assert shown and all(i["value"] is None for i in body["items"] if i["suppressed"])
    small = [i for i in shown if 0 < abs(i["value"]) < 10]
    if name not in ("incidence_rate_7d", "variant_share_l452r", "vaccination_coverage_dose1",
                    "positivity_rate_7d", "doubling_time"):
        assert small, f"{name}: the synthetic values should include some below 10"
    expected = cube["daily"][name]
    item = private["items"][-1]
    assert item["value"] == pytest.approx(float(expected.sel(territory=item["territory"],
                                                             date=item["date"])))


@pytest.mark.parametrize("name", COUNTS)
def test_small_counts_of_cases_and_tests_are_suppressed_for_the_public(
        signals_client, signals_token, cube, name):
    territory = "2A" if name == "screened_positive_tests" else "R94"
    url = f"/api/v1/data?indicator={name}&territory={territory}&per_page=1000"
    public = signals_client.get(url).get_json()
    private = signals_client.get(url, headers=signals_token).get_json()
    assert public["suppression_threshold"] == 10 and private["suppression_threshold"] is None
    small = [i for i in private["items"] if 0 < i["value"] < 10]
    assert small, f"{name} in {territory} should have counts below 10"
    shown = {i["date"]: i for i in public["items"]}
    for item in small:
        assert shown[item["date"]] == {**item, "value": None, "per_100k": None,
                                       "suppressed": True}
    assert all(i["value"] is None or i["value"] == 0 or i["value"] >= 10
               for i in public["items"])
    csv_text = signals_client.get(url + "&format=csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    hidden = [r for r in rows if r["suppressed"] == "1"]
    # Small counts, and the cells that would give them back (docs/DISCLOSURE.md).
    assert len(hidden) >= len(small) and all(r["value"] == "" for r in hidden)


def test_cases_data_and_csv_match_the_cube(signals_client, signals_token, cube):
    url = ("/api/v1/data?indicator=inc_cases&territory=FR,R84&start=2020-11-01"
           "&end=2020-11-03&format=csv&sep=;")
    text = signals_client.get(url, headers=signals_token).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert [(r["territory"], r["date"]) for r in rows] == [
        (c, f"2020-11-0{d}") for c in ("FR", "R84") for d in (1, 2, 3)]
    for r in rows:
        expected = float(cube["daily"]["inc_cases"].sel(territory=r["territory"], date=r["date"]))
        assert float(r["value"].replace(",", ".")) == expected
    # Départements have no daily cases: asking for one gives no rows, not an error.
    body = signals_client.get("/api/v1/data?indicator=inc_cases&territory=69",
                              headers=signals_token).get_json()
    assert body["items"] == []
    rate = signals_client.get("/api/v1/data?indicator=incidence_rate_7d&territory=FR"
                              "&start=2020-11-01&end=2020-11-01&format=csv").get_data(as_text=True)
    value = float(next(iter(csv.DictReader(io.StringIO(rate))))["value"])
    fr = cube["daily"]["inc_cases"].sel(territory="FR")
    seven = float(fr.sel(date=slice("2020-10-26", "2020-11-01")).sum())
    population = float(cube["daily"]["population"].sel(territory="FR"))
    assert value == pytest.approx(1e5 * seven / population, rel=1e-6)


def test_epci_is_an_aggregated_public_territory(signals_client):
    body = signals_client.get("/api/v1/territories?level=epci").get_json()
    assert [t["code"] for t in body["items"]] == ["200046977"]
    assert body["items"][0]["name"] == "Métropole de Lyon"
    r = signals_client.get("/api/v1/data?indicator=incidence_rate_7d_65_plus"
                           "&territory=200046977&per_page=5")
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["items"]
    assert items and all(np.isfinite(i["value"]) for i in items)


@pytest.mark.parametrize("query", [
    "indicator=rt&territory=69%00",
    "indicator=rt&territory=%1b[31m",
    "indicator=rt%0a",
    "indicator=rt&start=2021-02-30",
])
def test_bad_parameters_are_json_400(signals_client, query):
    r = signals_client.get(f"/api/v1/data?{query}")
    body = r.get_json()
    assert r.status_code == 400, body
    assert set(body) == {"code", "message", "details"} and body["code"] == "invalid_input"


# ---------------------------------------------------------------------------- the real cube
def test_real_indicators_are_labelled_and_flagged(client):
    items = client.get("/api/v1/indicators?frequency=daily&per_page=1000").get_json()["items"]
    entries = {i["name"]: i for i in items}
    for name in ("inc_cases", "inc_tests", "vaccinated_dose1"):
        assert entries[name]["count"] is True, name
    for name in ("incidence_rate_7d", "incidence_rate_7d_65_plus", "positivity_rate_7d",
                 "vaccination_coverage_dose1", "rt", "rt_lower", "rt_upper", "growth_rate",
                 "doubling_time"):
        entry = entries[name]
        assert entry["count"] is False, name
        assert entry["label"] and entry["label"] != entry["description"], name  # French
    assert entries["incidence_rate_7d"]["units_fr"] == "cas pour 100 000 habitants"
    # Every issue-12 indicator the cube holds has French words (not the English fallback).
    families = ("inc_cases", "inc_tests", "incidence_", "positivity_", "vaccinat", "screened_",
                "variant_share_", "rt", "growth_", "doubling_", "epidemic_")
    ours = [e for n, e in entries.items() if n.startswith(families)]
    assert len(ours) >= 30  # screening alone brings 10 window counts and 5 shares
    untranslated = [e["name"] for e in ours if e["label"] == e["description"]]
    assert not untranslated, untranslated


def test_real_small_case_counts_hidden_and_the_rates_over_them(client, auth):
    """Corsica's daily positives are often below 10: hidden for the public, and so are its
    7-day incidence and R(t) on the days whose window holds a hidden day (rate × population
    would give the hidden count back: docs/DISCLOSURE.md); the other days are shown."""
    url = "/api/v1/data?indicator=inc_cases&territory=R94&per_page=1000"
    public = client.get(url).get_json()
    private = client.get(url, headers=auth["analyst"]).get_json()
    small = {i["date"] for i in private["items"] if 0 < i["value"] < 10}
    assert small
    hidden = {i["date"] for i in public["items"] if i["suppressed"]}
    assert hidden >= small
    days = pd.DatetimeIndex(sorted(hidden))
    body = client.get("/api/v1/data?indicator=incidence_rate_7d&territory=R94"
                      "&per_page=1000").get_json()
    assert body["suppression_threshold"] == 10
    for item in body["items"]:
        day = pd.Timestamp(item["date"])
        over_hidden = ((days <= day) & (days > day - pd.Timedelta(days=7))).any()
        if over_hidden:
            assert item["suppressed"] and item["value"] is None, item
    assert any(not i["suppressed"] for i in body["items"])
    rt = client.get("/api/v1/data?indicator=rt&territory=R94&per_page=1000").get_json()
    assert rt["items"]


def test_real_metropole_incidence_is_public(client):
    r = client.get("/api/v1/data?indicator=incidence_rate_7d&territory=200046977"
                   "&format=csv&sep=;")
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff")),
                               delimiter=";"))
    assert rows and all(r["territory"] == "200046977" and r["value"] for r in rows)
