"""``/api/v1/risk``: the domain's risk levels (features.risk) served per territory and date, in
JSON and CSV, with criteria, inputs and missing inputs; errors; the OpenAPI document.

On the synthetic signals cube (``signals_client``) for exact values, and on the real cube."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from features.risk import LEVEL_LABELS, load_thresholds
from tests.synthetic_cube import signals_cube


@pytest.fixture(scope="module")
def cube():
    return signals_cube()


def _check_item(item: dict) -> None:
    """The served level is the one its served criteria give (the rule of features.risk)."""
    for c in item["criteria"]:
        if c["value"] is None:
            # Missing (criterion unknown), or hidden from the public over a hidden count
            # (docs/DISCLOSURE.md: the criterion is still evaluated).
            assert (c["met"] is None) == (c["input"] in item["missing"]), c
        else:
            assert c["met"] is (c["value"] > c["threshold"]), c
    reached = [lv for lv in (1, 2, 3)
               if all(c["met"] is True for c in item["criteria"] if c["level"] == lv)]
    if item["level"] >= 0:
        assert item["level"] == max([0, *reached])
    if item["complete"]:
        assert item["label"] == LEVEL_LABELS[item["level"]]


def test_regions_on_one_day_match_the_cube(signals_client, signals_token, cube):
    day = "2020-12-15"
    body = signals_client.get(f"/api/v1/risk?level=region&date={day}",
                              headers=signals_token).get_json()
    assert body["date"] == day and body["thresholds"] == load_thresholds().name
    assert "23 septembre 2020" in body["source"]
    assert body["levels"] == {str(k): v for k, v in LEVEL_LABELS.items()}
    items = {i["territory"]: i for i in body["items"]}
    assert set(items) == {"R84", "R94"}
    daily, yearly = cube["daily"], cube["yearly"]
    for code, item in items.items():
        _check_item(item)
        inc = float(daily["incidence_rate_7d"].sel(territory=code, date=day))
        assert item["inputs"]["incidence_rate_7d"] == pytest.approx(inc)
        icu = float(daily["icu"].sel(territory=code, date=day))
        beds = float(yearly["icu_beds_adult"].sel(territory=code, date="2020-01-01"))
        assert item["inputs"]["icu_occupancy"] == pytest.approx(100 * icu / beds)
        assert item["inputs_from"]["icu_occupancy"] == code
        # Régions have no 65+ incidence: named as missing, its criteria unknown.
        assert "incidence_rate_7d_65_plus" in item["missing"]
        assert all(c["met"] is None for c in item["criteria"]
                   if c["input"] == "incidence_rate_7d_65_plus")


def test_epci_over_time_uses_its_region_for_icu(signals_client, cube):
    body = signals_client.get("/api/v1/risk/200046977?start=2020-10-01&end=2021-03-31")
    assert body.status_code == 200, body.get_json()
    items = body.get_json()["items"]
    assert items and items[0]["date"] >= "2020-10-01" and items[-1]["date"] <= "2021-03-31"
    assert all(i["territory"] == "200046977" and i["name"] == "Métropole de Lyon" for i in items)
    assert all(i["inputs_from"]["icu_occupancy"] == "R84" for i in items)
    for item in items:
        _check_item(item)
    levels = {i["level"] for i in items}
    assert len(levels) >= 2, levels  # the synthetic wave crosses thresholds
    complete = [i for i in items if i["complete"]]
    assert complete and all(not i["missing"] for i in complete)


def test_default_date_is_the_latest_assessed(signals_client, cube):
    body = signals_client.get("/api/v1/risk?level=department").get_json()
    assert [i["territory"] for i in body["items"]] == ["01", "69", "2A"]
    last = pd.Timestamp(cube["daily"]["date"].values[-1]).strftime("%Y-%m-%d")
    assert body["date"] == last
    assert all(i["level"] >= 0 for i in body["items"])
    old = signals_client.get("/api/v1/risk?level=region&as_of=2021-01-01").get_json()
    assert old["date"] == "2020-12-31" and old["as_of"] == "2021-01-01"


def test_small_icu_counts_hidden_for_the_public(signals_client, signals_token, cube):
    icu = cube["daily"]["icu"].sel(territory="R94").to_series()
    days = icu[(icu > 0) & (icu < 10)].index
    assert len(days)
    day = days[len(days) // 2].strftime("%Y-%m-%d")
    url = f"/api/v1/risk?territory=R94&date={day}"
    public = signals_client.get(url).get_json()
    private = signals_client.get(url, headers=signals_token).get_json()
    assert private["items"][0]["inputs"]["icu"] == float(icu.loc[day])
    assert public["items"][0]["inputs"]["icu"] is None
    assert public["suppression_threshold"] == 10 and private["suppression_threshold"] is None
    # The level and the rate are not counts: identical for both.
    assert public["items"][0]["level"] == private["items"][0]["level"]


def test_risk_csv(signals_client, signals_token, cube):
    # Authenticated: Corsica's small counts hide the public's regional incidence that day.
    r = signals_client.get("/api/v1/risk?level=region&date=2020-12-15&format=csv&sep=;",
                           headers=signals_token)
    assert r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff")),
                               delimiter=";"))
    assert [row["territory"] for row in rows] == ["R84", "R94"]
    row = rows[0]
    assert row["date"] == "2020-12-15"
    assert row["label"] in LEVEL_LABELS.values() or "données incomplètes" in row["label"]
    assert "incidence_rate_7d > 50 : " in row["criteria"]
    assert row["missing"] == "incidence_rate_7d_65_plus"
    # One column per input, decimal comma for French Excel.
    assert row["icu_occupancy_from"] == "R84" and row["incidence_rate_7d_65_plus"] == ""
    inc = float(cube["daily"]["incidence_rate_7d"].sel(territory="R84", date="2020-12-15"))
    assert float(row["incidence_rate_7d"].replace(",", ".")) == pytest.approx(inc, abs=1e-6)
    assert "," in row["incidence_rate_7d"]


@pytest.mark.parametrize("url, status, word", [
    ("/api/v1/risk?level=planet", 400, "level"),
    ("/api/v1/risk?territory=XX,R84", 400, "unknown"),
    ("/api/v1/risk?territory=R84%00", 400, "control character"),
    ("/api/v1/risk?territory=%1b%5b31m", 400, "control character"),
    ("/api/v1/risk?date=2020-13-01", 400, "date"),
    ("/api/v1/risk?date=2035-01-01", 400, "last"),
    ("/api/v1/risk?date=1%0a", 400, "date"),
    ("/api/v1/risk?format=xml", 400, "format"),
    ("/api/v1/risk/R84?start=2021-01-01&end=2020-01-01", 400, "start"),
    ("/api/v1/risk/R84?start=nope", 400, "start"),
    ("/api/v1/risk/ZZ", 404, "ZZ"),
    ("/api/v1/risk/%07%00", 400, "control character"),
])
def test_bad_parameters_are_json_errors(signals_client, url, status, word):
    r = signals_client.get(url)
    body = r.get_json()
    assert r.status_code == status, body
    assert set(body) == {"code", "message", "details"}
    assert word in str(body["details"]) or word in body["message"]


def test_openapi_documents_the_risk_endpoints(signals_client):
    paths = signals_client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/risk", "/api/v1/risk/{code}"):
        op = paths[path]["get"]
        assert "text/csv" in op["responses"]["200"]["content"]
        assert {"400", "404", "503"} <= set(op["responses"])
    names = {p["name"] for p in paths["/api/v1/risk"]["get"]["parameters"]}
    assert {"level", "territory", "date", "as_of", "format"} <= names


def test_real_cube_risk_levels(client):
    """Lyon's métropole, 25 October 2020: incidence over 250 (all ages) and 100 (65+), and
    Auvergne-Rhône-Alpes' ICU occupancy over 30 %: Alerte maximale, every input known."""
    body = client.get("/api/v1/risk/200046977?start=2020-10-25&end=2020-10-25").get_json()
    item = body["items"][0]
    assert item["level"] == 3 and item["complete"] and item["label"] == "Alerte maximale"
    assert item["inputs"]["incidence_rate_7d"] > 250 and item["inputs_from"]["icu_occupancy"] \
        == "R84"
    regions = client.get("/api/v1/risk?level=region&date=2020-10-25").get_json()["items"]
    assert len(regions) >= 13 and all(np.isfinite(r["level"]) for r in regions)
    for r in regions:
        _check_item(r)
