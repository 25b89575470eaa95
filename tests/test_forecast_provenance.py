"""A forecast answer names the vintage and model version the forecast was made from, not the
cube vintage being served now: in ``X-Vigie-Vintage`` / ``X-Vigie-Model-Version``, in
``Last-Modified``, and in the audit row of the request."""

from __future__ import annotations

import datetime as dt

import pytest


@pytest.fixture
def two_vintages(real_cube, make_settings):
    """A home whose forecasts were made on vintage A, and where vintage B came since."""
    from features.catalog import get_engine, vintages
    from features.store import CubeStore
    from tests.api_fixtures import copy_catalog, synthetic_runs

    settings = make_settings(real_cube.data_dir, name="provenance")
    copy_catalog(real_cube, settings)
    a = CubeStore(settings).current_vintage()
    runs = synthetic_runs(settings, a["id"])
    with get_engine(settings.database_url).begin() as conn:  # B: same files, issued later
        conn.execute(vintages.insert().values(
            id="20991231T000000Z-b0000000", issued_at=a["issued_at"] + dt.timedelta(days=1),
            path=a["path"], data_dir=a.get("data_dir"), sources=a["sources"], files=a["files"],
            row_counts=a["row_counts"], fitted=a.get("fitted")))
    assert CubeStore(settings).current_vintage()["id"] == "20991231T000000Z-b0000000"
    return settings, a, runs


def test_forecast_answers_carry_the_forecasts_vintage(two_vintages):
    from features.catalog import get_engine
    from service.app import create_app
    from service.audit import query
    from service.auth import create_token

    settings, a, runs = two_vintages
    engine = get_engine(settings.database_url)
    analyst = {"Authorization": "Bearer " + create_token(engine, "prov", "analyst")}
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()

    # The current vintage is B: answers from the cube say so (the test can tell them apart).
    cube = client.get("/api/v1/indicators", headers=analyst)
    assert cube.headers["X-Vigie-Vintage"] == "20991231T000000Z-b0000000"

    run_id = runs["inc_hosp_national"]
    for url in ("/api/v1/forecasts?territory=FR", "/api/v1/forecasts?target=inc_hosp",
                "/api/v1/forecasts?territory=FR&format=csv", f"/api/v1/forecasts/runs/{run_id}"):
        for headers in (analyst, {}):
            r = client.get(url, headers=headers)
            assert r.status_code == 200, (url, r.get_json())
            assert r.headers["X-Vigie-Vintage"] == a["id"], url
            assert r.headers["X-Vigie-Model-Version"] == "ensemble@1.0"
            assert r.headers["X-Vigie-Run"] == run_id
    # Last-Modified is the forecast's creation (now), not B's issue time (a day later).
    r = client.get("/api/v1/forecasts?territory=FR", headers=analyst)
    assert r.last_modified < a["issued_at"] + dt.timedelta(hours=12)
    assert r.get_json()["run"]["vintage_id"] == a["id"]

    rows, _ = query(engine, event="request")
    forecast_rows = [row for row in rows if row["path"].startswith("/api/v1/forecasts")]
    assert len(forecast_rows) == 5
    assert {row["vintage_id"] for row in forecast_rows} == {a["id"]}
    assert {row["model_version"] for row in forecast_rows} == {"ensemble@1.0"}
    assert {row["run_id"] for row in forecast_rows} == {run_id}


def test_alert_answers_carry_the_forecasts_vintage(two_vintages):
    """/alerts is computed from the icu forecast: its header and audit row name that run's
    vintage, not the cube vintage served now (B)."""
    from features.catalog import get_engine
    from service.app import create_app
    from service.audit import query
    from service.auth import create_token

    settings, a, runs = two_vintages
    engine = get_engine(settings.database_url)
    analyst = {"Authorization": "Bearer " + create_token(engine, "prov", "analyst")}
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    for headers in (analyst, {}):
        r = client.get("/api/v1/alerts?territory=75", headers=headers)
        assert r.status_code == 200, r.get_json()
        assert r.headers["X-Vigie-Vintage"] == a["id"]
        assert r.headers["X-Vigie-Run"] == runs["icu_department"]
    rows, _ = query(engine, event="request")
    assert {row["vintage_id"] for row in rows if row["path"] == "/api/v1/alerts"} == {a["id"]}
