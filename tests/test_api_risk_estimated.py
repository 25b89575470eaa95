"""The départements' incidence estimated from screening, as the API and the dashboard serve it
in the risk level (real cube): origin per input, the estimated list, CSV, French words."""

from __future__ import annotations

import csv
import io

DAY = "2021-11-27"


def test_api_says_which_inputs_are_estimated(client):
    body = client.get(f"/api/v1/risk?level=department&date={DAY}&per_page=200").get_json()
    items = {i["territory"]: i for i in body["items"]}
    assert len(items) == 101
    for item in items.values():
        assert item["estimated"] == ["incidence_rate_7d"], item["territory"]
        assert item["inputs_origin"]["incidence_rate_7d"] == "estimated_from_screening"
        assert item["inputs_origin"]["incidence_rate_7d_65_plus"] is None
        assert item["inputs_origin"]["icu_occupancy"] == "observed"
        assert "incidence_rate_7d" not in item["missing"]
        assert item["level"] >= 0
        for c in item["criteria"]:
            assert c["estimated"] is (c["input"] == "incidence_rate_7d")
            if c["input"] == "incidence_rate_7d" and c["value"] is not None:  # None: hidden
                assert c["met"] is (c["value"] > c["threshold"])
    # A région's incidence is its own.
    region = client.get(f"/api/v1/risk?territory=R84&date={DAY}").get_json()["items"][0]
    assert region["estimated"] == [] and region["inputs_origin"]["incidence_rate_7d"] == \
        "observed"
    r = client.get(f"/api/v1/risk?territory=69,R84&date={DAY}&format=csv")
    rows = {row["territory"]: row for row in
            csv.DictReader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff")))}
    assert rows["69"]["estimated"] == "incidence_rate_7d" and rows["R84"]["estimated"] == ""


def test_dashboard_map_and_territory_say_estimated_in_french(client):
    risk = client.get(f"/tableau/donnees/risque?date={DAY}").get_json()
    item = risk["items"]["69"]
    assert item["estimated"] and "criblage" in item["estimated"][0]
    assert item["estimated"][0].startswith("Taux d'incidence sur 7 jours (estimé")
    assert "donnée estimée : Taux d'incidence sur 7 jours (estimé" in item["message"]
    page = client.get("/tableau/donnees/signaux/69").get_json()["risk"]
    assert page["available"] and page["estimated"]
    assert any("(estimé)" in m for m in page["met"]), page
    html = client.get("/").get_data(as_text=True)
    assert "Données estimées" in html and "tests positifs du criblage" in html
    methods = client.get("/methodes").get_data(as_text=True)
    assert "Taux d'incidence estimé des départements" in methods
