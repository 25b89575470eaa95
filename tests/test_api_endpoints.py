"""Every endpoint: JSON and CSV answers, validation errors, pagination, caching headers,
small-count suppression, provenance headers, OpenAPI document and docs page."""

from __future__ import annotations

import csv
import io

import pytest
from scipy import stats

GETS = [
    "/api/v1/territories", "/api/v1/territories/75", "/api/v1/indicators",
    "/api/v1/indicators/hosp", "/api/v1/data?indicator=hosp&territory=75",
    "/api/v1/vintages", "/api/v1/forecasts?territory=FR", "/api/v1/forecasts/runs",
    "/api/v1/models", "/api/v1/models/baseline", "/api/v1/scenarios",
    "/api/v1/alerts",
]


@pytest.mark.parametrize("url", GETS)
def test_public_reads_answer_json(client, url):
    r = client.get(url)
    assert r.status_code == 200, r.get_json()
    assert r.mimetype == "application/json"
    assert r.headers["ETag"]
    assert "public" in r.headers["Cache-Control"]


def test_territories_hierarchy_and_filters(client):
    body = client.get("/api/v1/territories?level=region&per_page=100").get_json()
    codes = {t["code"] for t in body["items"]}
    assert {"R11", "R84", "R93"} <= codes
    assert all(t["level"] == "region" for t in body["items"])
    paris = client.get("/api/v1/territories/75").get_json()
    assert paris["parent"] == "R11" and paris["population"] > 2_000_000
    assert [a["code"] for a in paris["ancestors"]] == ["R11", "FR"]
    idf = client.get("/api/v1/territories/R11").get_json()
    assert {"75", "92", "93", "94"} <= {c["code"] for c in idf["children"]}
    assert client.get("/api/v1/territories?q=bouches").get_json()["items"][0]["code"] == "13"
    r = client.get("/api/v1/territories/99")
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"


def test_indicators_have_units_source_licence(client):
    body = client.get("/api/v1/indicators?per_page=1000").get_json()
    entries = {(i["name"], i["frequency"]): i for i in body["items"]}
    assert ("inc_hosp", "daily") in entries and ("inc_hosp", "weekly") in entries
    hosp = entries[("hosp", "daily")]
    assert hosp["units"] and hosp["source"] and hosp["licence"] and hosp["count"] is True
    assert hosp["first_date"] <= hosp["last_date"]
    weekly = client.get("/api/v1/indicators/inc_hosp?frequency=weekly").get_json()
    assert weekly["frequency"] == "weekly"


def test_data_series_and_as_of(client, auth):
    r = client.get("/api/v1/data?indicator=hosp&territory=75,13&start=2020-11-01"
                   "&end=2020-11-07", headers=auth["analyst"])
    body = r.get_json()
    assert r.status_code == 200
    assert {i["territory"] for i in body["items"]} == {"75", "13"}
    assert {i["date"] for i in body["items"]} == {f"2020-11-0{d}" for d in range(1, 8)}
    assert body["vintage_id"] == r.headers["X-Vigie-Vintage"]
    old = client.get("/api/v1/data?indicator=hosp&territory=75&as_of=2020-11-03&per_page=1000",
                     headers=auth["analyst"]).get_json()
    assert old["as_of"] == "2020-11-03"
    assert max(i["date"] for i in old["items"]) == "2020-11-02"  # on-or-after as_of removed


@pytest.mark.parametrize("query, field", [
    ("", "indicator"),
    ("indicator=nope", "known"),
    ("indicator=hosp&territory=XX", "unknown"),
    ("indicator=hosp&start=2021-01-01&end=2020-01-01", "start"),
    ("indicator=hosp&start=yesterday", "query"),
    ("indicator=hosp&per_page=0", "query"),
    ("indicator=hosp&format=xml", "query"),
    ("indicator=hosp&frequency=yearly", "frequency"),
])
def test_data_invalid_input_is_400_with_details(client, query, field):
    r = client.get(f"/api/v1/data?{query}")
    body = r.get_json()
    assert r.status_code == 400, body
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == "invalid_input"
    assert field in str(body["details"]) or field in body["message"]


def test_public_counts_below_threshold_are_suppressed(client, auth, api_settings):
    url = "/api/v1/data?indicator=hosp&territory=48&start=2020-09-01&end=2020-12-31"
    public = client.get(url).get_json()
    private = client.get(url, headers=auth["analyst"]).get_json()
    threshold = api_settings.small_count_threshold
    assert public["suppression_threshold"] == threshold
    assert private["suppression_threshold"] is None
    small = [i for i in private["items"] if 0 < i["value"] < threshold]
    assert small, "Lozère should have small hospital counts in autumn 2020"
    by_date = {i["date"]: i for i in public["items"]}
    for item in small:
        assert by_date[item["date"]] == {**item, "value": None, "per_100k": None,
                                         "suppressed": True}
    assert all(not i["suppressed"] for i in private["items"])
    # Rates and indices are not counts: never suppressed.
    rate = client.get("/api/v1/data?indicator=stringency_index&territory=48").get_json()
    assert not any(i["suppressed"] for i in rate["items"])


def test_public_gets_aggregated_territories_only(client, auth, api_settings):
    from features.store import CubeStore

    ds = CubeStore(api_settings).open("daily")
    communes = [c for c, lv in zip(ds["territory"].values, ds["territory_level"].values,
                                   strict=True) if lv == "commune"]
    if not communes:
        pytest.skip("this cube holds no commune-level series")
    r = client.get(f"/api/v1/data?indicator=hosp&territory={communes[0]}")
    assert r.status_code == 403 and r.get_json()["code"] == "aggregated_only"
    assert client.get(f"/api/v1/data?indicator=hosp&territory={communes[0]}",
                      headers=auth["analyst"]).status_code == 200


def test_csv_variants(client, auth):
    base = "/api/v1/data?indicator=hosp&territory=75&start=2020-11-01&end=2020-11-03"
    r = client.get(base + "&format=csv", headers=auth["analyst"])
    assert r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    # Paris, published SPF stocks (fr_spf_hosp_rea_stock_dep_2020H2.csv).
    assert [(r["territory"], r["date"], float(r["value"])) for r in rows] == [
        ("75", "2020-11-01", 1185.0), ("75", "2020-11-02", 1244.0), ("75", "2020-11-03", 1296.0)]
    assert rows[0]["value"] == "1185.0"  # decimal point in the default CSV
    fr = client.get(base + "&format=csv&sep=;", headers=auth["analyst"])
    text = fr.get_data(as_text=True)
    assert text.startswith("\ufeff")  # Excel needs the BOM to read UTF-8
    rows_fr = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert [float(r["value"].replace(",", ".")) for r in rows_fr] == \
        [float(r["value"]) for r in rows]
    assert rows_fr[0]["value"] == "1185,0"  # decimal comma for French Excel
    assert client.get(base + "&format=csv&sep=,&decimal=,").status_code == 400
    terr = client.get("/api/v1/territories?level=region&format=csv&sep=;")
    assert "Île-de-France" in terr.get_data(as_text=True)


def test_pagination_and_link_header(client):
    first = client.get("/api/v1/territories?per_page=10&page=1")
    body = first.get_json()
    assert len(body["items"]) == 10 and body["pagination"]["total"] > 100
    assert first.headers["X-Total-Count"] == str(body["pagination"]["total"])
    assert 'rel="next"' in first.headers["Link"]
    second = client.get("/api/v1/territories?per_page=10&page=2").get_json()
    assert {t["code"] for t in body["items"]}.isdisjoint(t["code"] for t in second["items"])
    beyond = client.get("/api/v1/territories?per_page=10&page=999").get_json()
    assert beyond["items"] == []


def test_etag_and_last_modified_give_304(client):
    url = "/api/v1/data?indicator=hosp&territory=75&start=2020-11-01&end=2020-11-03"
    r = client.get(url)
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # Public and authenticated answers differ (suppression): they never share an entry.
    # Authorization: public and token answers differ; Accept-Encoding: compressed bodies.
    assert "Authorization" in {v.strip() for v in r.headers["Vary"].split(",")}


def test_forecasts_latest_filters_and_formats(client, auth):
    body = client.get("/api/v1/forecasts?target=icu&territory=75,13&horizon=7",
                      headers=auth["analyst"]).get_json()
    assert {i["location"] for i in body["items"]} == {"75", "13"}
    assert all(i["horizon"] == 7 for i in body["items"])
    item = body["items"][0]
    assert len(item["quantiles"]) == 23 and item["median"] in {q["value"]
                                                               for q in item["quantiles"]}
    assert body["run"]["model"] == "ensemble" and body["run"]["vintage_id"]
    hub = client.get("/api/v1/forecasts?territory=FR&format=hub")
    lines = hub.get_data(as_text=True).splitlines()
    assert lines[0] == "forecast_date,target,target_end_date,location,type,quantile,value"
    assert len(lines) == 1 + 2 * 23
    assert hub.headers["X-Vigie-Run"]
    run_id = hub.headers["X-Vigie-Run"]
    by_id = client.get(f"/api/v1/forecasts?run_id={run_id}&format=hub")
    assert by_id.data == hub.data
    meta = client.get(f"/api/v1/forecasts/runs/{run_id}").get_json()
    assert meta["target"] == "inc_hosp"
    assert client.get("/api/v1/forecasts/runs/nope").status_code == 404
    assert client.get("/api/v1/forecasts?run_id=..%2F..%2Fetc").status_code == 400
    missing = client.get("/api/v1/forecasts?target=hosp&level=region")
    assert missing.status_code == 404 and missing.get_json()["code"] == "no_forecast"


def test_forecast_small_counts_suppressed_for_public(client, auth):
    url = "/api/v1/forecasts?target=icu&territory=48"
    public = client.get(url).get_json()["items"]
    assert public and all(i["suppressed"] and i["median"] is None for i in public)
    private = client.get(url, headers=auth["analyst"]).get_json()["items"]
    assert all(not i["suppressed"] and i["median"] == 4.0 for i in private)


def test_alerts_match_closed_form(client):
    body = client.get("/api/v1/alerts?territory=75,13,01").get_json()
    items = {i["territory"]: i for i in body["items"]}
    assert body["source"] == "forecast" and "lower bound" in body["method"]
    for code, median in (("75", 800.0), ("13", 150.0), ("01", 25.0)):
        item = items[code]
        cap = item["capacity"]
        # DREES adult ICU beds counted at the end of 2020, the last count before the forecast.
        assert cap > 0 and item["capacity_date"] == "2021-01-01"
        expected = 1 - stats.norm.cdf(cap, loc=median, scale=0.2 * median)
        expected = min(max(expected, 0.01), 0.99)
        # Linear interpolation between 23 quantiles: within a few points of the exact value.
        assert item["p_exceed_7d"] == pytest.approx(expected, abs=0.03)
        assert item["p_exceed_14d"] >= item["p_exceed_7d"]
        assert item["level"] in ("red", "orange", "yellow", "green")
        assert "lits de réanimation" in item["message"]


def test_alert_levels_and_probability_interpolation():
    import numpy as np

    from models.alerts import alert_level, prob_exceed

    levels = np.array([0.1, 0.5, 0.9])
    values = np.array([10.0, 20.0, 30.0])
    assert prob_exceed(levels, values, 20.0) == pytest.approx(0.5)
    assert prob_exceed(levels, values, 25.0) == pytest.approx(0.3)
    assert prob_exceed(levels, values, 5.0) == pytest.approx(0.9)    # capped: "at least"
    assert prob_exceed(levels, values, 99.0) == pytest.approx(0.1)   # capped: "at most"
    assert alert_level(0.6, 0.7) == "red"
    assert alert_level(0.1, 0.6) == "orange"
    assert alert_level(0.01, 0.2) == "yellow"
    assert alert_level(0.0, 0.02) == "green"
    assert alert_level(None, 0.5) == "unknown"


def test_vintages_and_models(client, auth):
    body = client.get("/api/v1/vintages").get_json()
    assert body["items"][0]["current"] is True and body["items"][0]["checksums"] is None
    vid = body["items"][0]["id"]
    detail = client.get(f"/api/v1/vintages/{vid}", headers=auth["analyst"]).get_json()
    assert detail["checksums"] and all(len(v) == 64 for v in detail["checksums"].values())
    assert client.get("/api/v1/vintages/nope").status_code == 404
    models = client.get("/api/v1/models").get_json()["items"]
    assert {"baseline", "ensemble"} <= {m["name"] for m in models}
    assert client.get("/api/v1/models/nope").status_code == 404
    assert client.get("/api/v1/models/leaderboard").get_json()["code"] == "no_leaderboard"


def test_health_ready_metrics(client):
    assert client.get("/healthz").get_json()["status"] == "ok"
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ok" and ready["checks"]["database"] == "ok"
    client.get("/api/v1/territories")
    text = client.get("/metrics").get_data(as_text=True)
    assert "vigie_http_requests_total" in text and "vigie_response_cache_hits_total" in text
    assert 'endpoint="/api/v1/territories"' in text


def test_readyz_503_without_vintage(make_settings, tmp_path):
    from service.app import create_app

    settings = make_settings(tmp_path / "empty", name="empty")
    client = create_app({"TESTING": True, "SETTINGS": settings}).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["status"] == "unavailable"
    r = client.get("/api/v1/territories")
    assert r.status_code == 503 and r.get_json()["code"] == "no_data"


def test_openapi_document_and_local_docs(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ("/api/v1/territories", "/api/v1/data", "/api/v1/forecasts", "/api/v1/alerts",
                 "/api/v1/scenarios/runs", "/api/v1/jobs", "/api/v1/vintages",
                 "/api/v1/models", "/api/v1/indicators", "/healthz", "/readyz"):
        assert path in paths, path
    assert paths["/api/v1/jobs"]["get"]["security"] == [{"BearerAuth": []}]
    assert "text/csv" in paths["/api/v1/data"]["get"]["responses"]["200"]["content"]
    assert "400" in paths["/api/v1/data"]["get"]["responses"]
    docs = client.get("/api/v1/docs").get_data(as_text=True)
    assert "cdn" not in docs.lower() and "/api/v1/docs/assets/swagger-ui-bundle.js" in docs
    assert client.get("/api/v1/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_unknown_route_and_method_use_the_error_shape(client):
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and set(r.get_json()) == {"code", "message", "details"}
    r = client.delete("/api/v1/territories")
    assert r.status_code == 405 and r.get_json()["code"] == "method_not_allowed"


def test_internal_errors_hide_internals(api_settings, monkeypatch):
    from service.api import territories
    from service.app import create_app

    app = create_app({"SETTINGS": api_settings, "RATELIMIT_ENABLED": False})

    def boom():
        raise RuntimeError("secret SQL detail")

    monkeypatch.setattr(territories, "territory_table", boom)
    r = app.test_client().get("/api/v1/territories?page=3")
    assert r.status_code == 500
    assert r.get_json()["code"] == "internal_error"
    assert "secret" not in r.get_data(as_text=True)


def test_rate_limit_per_client(api_settings):
    from service.app import create_app

    app = create_app({"TESTING": True, "SETTINGS": api_settings,
                      "RATELIMIT_PUBLIC": "3 per minute"})
    client = app.test_client()
    codes = [client.get("/api/v1/vintages").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.get("/api/v1/vintages")
    assert r.get_json()["code"] == "rate_limited" and r.headers.get("Retry-After")
    assert client.get("/healthz").status_code == 200  # probes are never limited
