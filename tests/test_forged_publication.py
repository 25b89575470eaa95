"""A planner's custom scenario run never changes what the public sees.

The public scenario alert (``/api/v1/alerts?source=scenario``) and the dashboard's overview come
only from runs of the library's scenario definitions, unmodified (same content hash as the
library file), run by the service (CLI or scheduled job), or from runs an admin published
(``POST /api/v1/scenarios/runs/<id>/publish``, audited; ``/unpublish`` withdraws).

The attack reproduced here: a planner submits their own ``status_quo`` with 1 ICU bed per
territory. Before the fix it became the public alert (red, "plus de 99 %").
"""

from __future__ import annotations

import pytest

from tests.api_fixtures import copy_catalog, synthetic_runs

SCENARIO_ALERT = "/api/v1/alerts?territory=FR&source=scenario"


@pytest.fixture
def served(real_cube, make_settings, db_url, monkeypatch):
    """A writable home on the real cube's vintage (synthetic forecasts), a client, tokens and
    the library status quo run by the service through the CLI, as an operator would; SQLite,
    and PostgreSQL when ``VIGIE_TEST_DATABASE_URL`` is set."""
    from features.catalog import get_engine
    from features.store import CubeStore
    from service.app import create_app
    from service.auth import create_token
    from service.cli import main as cli

    settings = make_settings(real_cube.data_dir, name="forged", database_url=db_url)
    copy_catalog(real_cube, settings)
    synthetic_runs(settings, CubeStore(settings).current_vintage()["id"])
    engine = get_engine(settings.database_url)
    headers = {role: {"Authorization": "Bearer " + create_token(engine, f"t-{role}", role)}
               for role in ("analyst", "planner", "admin")}
    monkeypatch.setenv("VIGIE_HOME", str(settings.home))
    monkeypatch.setenv("VIGIE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VIGIE_DATA_DIR", str(settings.data_dir))
    assert cli(["jobs", "run", "scenario", "--param", "name=status_quo"]) == 0
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    return settings, engine, client, headers


def _forged_status_quo() -> dict:
    """The library status quo, with 1 adult ICU bed everywhere: every trajectory exceeds it."""
    from scenarios import load_library_scenario

    definition = {k: v for k, v in load_library_scenario("status_quo").items()
                  if not k.startswith("_")}
    definition["capacity"] = {"icu": 1}
    return definition


def _submit(client, headers, body) -> int:
    r = client.post("/api/v1/scenarios/runs", json=body, headers=headers)
    assert r.status_code == 202, r.get_json()
    return r.get_json()["run_id"]


def _run_queue(settings, engine, clock) -> None:
    from service.jobs import run_pending

    assert {s for _, s in run_pending(engine, settings)} == {"ok"}
    clock.advance(1.1)  # past the freshness window of the response cache


def _public_views(client) -> tuple[dict, dict, dict]:
    alert = client.get(SCENARIO_ALERT)
    assert alert.status_code == 200, alert.get_json()
    overview = client.get("/tableau/donnees/ensemble")
    assert overview.status_code == 200
    alerts_dep = client.get("/api/v1/alerts?level=department&source=forecast")
    return alert.get_json(), overview.get_json()["alerts"], alerts_dep.get_json()


def test_a_planners_custom_status_quo_changes_nothing_public(served, api_clock):
    settings, engine, client, headers = served
    before = _public_views(client)
    [fr] = before[0]["items"]
    assert before[0]["run_id"].startswith("scenario:") and fr["capacity"] > 100

    # The attack: a custom "status_quo" with 1 ICU bed, and the library status quo submitted
    # by the planner with a start date of their choosing (the autumn 2020 wave).
    forged = _submit(client, headers["planner"], {"definition": _forged_status_quo()})
    early = _submit(client, headers["planner"], {"name": "status_quo", "as_of": "2020-10-25"})
    _run_queue(settings, engine, api_clock)

    # The forged run exists and its own figures are what the planner asked for...
    mine = client.get(f"/api/v1/scenarios/runs/{forged}", headers=headers["planner"]).get_json()
    assert mine["status"] == "ok" and mine["scenario"] == "status_quo"
    assert mine["summary"]["FR"]["icu"]["capacity"] == 1

    # ...but the public sees exactly what it saw before.
    after = _public_views(client)
    [fr_after] = after[0]["items"]
    assert (after[0]["run_id"], fr_after["level"], fr_after["message"]) == (
        before[0]["run_id"], fr["level"], fr["message"])
    assert after == before
    # Planners see their runs marked as custom, not public.
    assert mine["public"] is False and mine["origin"] == "custom"
    assert client.get(f"/api/v1/scenarios/runs/{early}",
                      headers=headers["planner"]).get_json()["public"] is False
    # Anonymous callers read no run directly.
    assert client.get("/api/v1/scenarios/runs").status_code == 401
    assert client.get(f"/api/v1/scenarios/runs/{forged}").status_code == 401


def test_a_modified_library_definition_run_by_the_service_is_not_public(served, api_clock):
    """Content, not name: the CLI running an edited status quo is a custom run."""
    import json

    from service.cli import main as cli

    _settings, _engine, client, headers = served
    before = client.get(SCENARIO_ALERT).get_json()
    assert cli(["jobs", "run", "scenario", "--param",
                "definition=" + json.dumps(_forged_status_quo())]) == 0
    api_clock.advance(1.1)
    assert client.get(SCENARIO_ALERT).get_json() == before
    runs = client.get("/api/v1/scenarios/runs", headers=headers["analyst"]).get_json()["items"]
    assert [r["origin"] for r in runs] == ["custom", "library"]
    assert [r["public"] for r in runs] == [False, True]


def test_admin_publishes_and_withdraws_a_run_planners_cannot(served, api_clock):
    from service.audit import query

    settings, engine, client, headers = served
    library_run = client.get(SCENARIO_ALERT).get_json()["run_id"]
    forged = _submit(client, headers["planner"], {"definition": _forged_status_quo()})
    _run_queue(settings, engine, api_clock)

    publish = f"/api/v1/scenarios/runs/{forged}/publish"
    r = client.post(publish, headers=headers["planner"])
    assert r.status_code == 403 and r.get_json()["details"]["required_role"] == "admin"
    assert client.post(publish).status_code == 401
    assert client.post("/api/v1/scenarios/runs/999999/publish",
                       headers=headers["admin"]).status_code == 404
    api_clock.advance(1.1)
    assert client.get(SCENARIO_ALERT).get_json()["run_id"] == library_run

    # An admin publishes it deliberately: from then on it is the public scenario alert.
    r = client.post(publish, headers=headers["admin"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["public"] is True and body["publication"]["published"] is True
    assert body["publication"]["by"] == "t-admin"
    api_clock.advance(1.1)
    alert = client.get(SCENARIO_ALERT).get_json()
    assert alert["run_id"] == f"scenario:{forged}"
    assert alert["items"][0]["capacity"] == 1 and alert["items"][0]["level"] == "red"
    rows, _ = query(engine, event="scenario_published")
    assert [(r["actor"], r["role"], r["run_id"]) for r in rows] == [
        ("t-admin", "admin", f"scenario:{forged}")]

    # Withdrawn: the library run is the public alert again; audited too.
    r = client.post(f"/api/v1/scenarios/runs/{forged}/unpublish", headers=headers["admin"])
    assert r.status_code == 200 and r.get_json()["public"] is False
    assert client.post(f"/api/v1/scenarios/runs/{forged}/unpublish",
                       headers=headers["planner"]).status_code == 403
    api_clock.advance(1.1)
    assert client.get(SCENARIO_ALERT).get_json()["run_id"] == library_run
    rows, _ = query(engine, event="scenario_unpublished")
    assert [r["run_id"] for r in rows] == [f"scenario:{forged}"]

    # A queued or failed run cannot be published.
    queued = _submit(client, headers["planner"], {"name": "status_quo"})
    r = client.post(f"/api/v1/scenarios/runs/{queued}/publish", headers=headers["admin"])
    assert r.status_code == 409


def test_the_public_alert_survives_a_flood_of_custom_runs(served):
    """Planners' runs cannot push the library run out of the window the alert looks at."""
    from service.db import job_runs
    from service.jobs import enqueue

    settings, engine, client, _headers = served
    before = client.get(SCENARIO_ALERT).get_json()
    definition = _forged_status_quo()
    ids = [enqueue(engine, "scenario", {"definition": definition}, trigger="api",
                   requested_by="t-planner") for _ in range(120)]
    with engine.begin() as conn:  # finished, as if a planner had looped (nothing computed)
        conn.execute(job_runs.update().where(job_runs.c.id.in_(ids)).values(
            status="ok", result={"scenario": "status_quo"}))
    # A new process (no response cache) answers the same.
    from service.app import create_app

    fresh = create_app({"TESTING": True, "SETTINGS": settings,
                        "RATELIMIT_ENABLED": False}).test_client()
    assert fresh.get(SCENARIO_ALERT).get_json() == before


def test_a_library_pick_on_another_territory_is_library_content_not_public(served, api_clock):
    """What the scenario page does when a planner ticks a library scenario: the definition
    as the page reads it, on the territory chosen. It is the library's content (not labelled
    « définition personnalisée »), and, not run by the service, never public."""
    settings, engine, client, headers = served
    before = _public_views(client)
    picked = client.get("/tableau/donnees/scenario/status_quo").get_json()
    picked["territories"] = ["69"]
    pick = _submit(client, headers["planner"], {"definition": picked})
    changed = {**picked, "capacity": {"icu": 1}}
    forged = _submit(client, headers["planner"], {"definition": changed})
    _run_queue(settings, engine, api_clock)
    runs = {r["run_id"]: r for r in client.get(
        "/api/v1/scenarios/runs", headers=headers["analyst"]).get_json()["items"]}
    assert (runs[pick]["origin"], runs[pick]["public"]) == ("library", False)
    assert (runs[forged]["origin"], runs[forged]["public"]) == ("custom", False)
    assert _public_views(client) == before
