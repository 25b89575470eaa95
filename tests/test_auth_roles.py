"""Tokens (hashed, revocable), the role matrix over every route, the audit trail."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.api_fixtures import ROLES

ALL = ("public", *ROLES)
#: (method, url, json body, lowest role allowed)
ROUTES = [
    ("GET", "/api/v1/territories", None, "public"),
    ("GET", "/api/v1/data?indicator=hosp&territory=75", None, "public"),
    ("GET", "/api/v1/forecasts?territory=FR", None, "public"),
    ("GET", "/api/v1/alerts?territory=75", None, "public"),
    ("GET", "/api/v1/scenarios", None, "public"),
    ("GET", "/api/v1/scenarios/runs", None, "analyst"),
    ("POST", "/api/v1/scenarios/runs", {"name": "status_quo"}, "planner"),
    ("GET", "/api/v1/jobs", None, "admin"),
    ("GET", "/api/v1/jobs/runs", None, "admin"),
    ("POST", "/api/v1/jobs/backtest/run", {"params": {}}, "admin"),
    ("GET", "/api/v1/audit", None, "admin"),
]


@pytest.mark.parametrize("method, url, body, lowest", ROUTES,
                         ids=[f"{m} {u.split('?')[0]}" for m, u, _, _ in ROUTES])
@pytest.mark.parametrize("role", ALL)
def test_role_matrix(client, auth, method, url, body, lowest, role):
    r = client.open(url, method=method, json=body, headers=auth[role])
    allowed = ALL.index(role) >= ALL.index(lowest)
    if allowed:
        assert r.status_code in (200, 202), (role, r.get_json())
    else:
        expected = 401 if role == "public" else 403
        assert r.status_code == expected, (role, r.get_json())
        assert r.get_json()["details"]["required_role"] == lowest


@pytest.mark.parametrize("header", ["Bearer vg_not-a-real-token", "Basic abc", "Bearer "])
def test_bad_tokens_are_refused_even_on_public_routes(client, header):
    r = client.get("/api/v1/territories", headers={"Authorization": header})
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_token"


def test_tokens_stored_hashed_and_revocable(db_url):
    from features.catalog import get_engine
    from service.auth import create_token, hash_token, list_tokens, lookup, revoke_token
    from service.db import api_tokens

    engine = get_engine(db_url)
    token = create_token(engine, "cellule de crise 13", "crisis_cell")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_tokens.c.token_hash)).scalars().all()
    assert token not in str(stored) and hash_token(token) in stored
    principal = lookup(engine, token)
    assert principal.role == "crisis_cell" and principal.has("planner")
    assert not principal.has("admin")
    [row] = list_tokens(engine)
    assert revoke_token(engine, row["id"])
    assert lookup(engine, token) is None
    with pytest.raises(ValueError):
        create_token(engine, "x", "superuser")


def test_token_cli(runner, tmp_path):
    env = {"VIGIE_HOME": str(tmp_path), "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path}/t.sqlite"}
    code, out, _ = runner(["token", "create", "--role", "planner", "--name", "ARS PACA"], env)
    assert code == 0 and out.strip().startswith("vg_")
    code, out, _ = runner(["token", "list"], env)
    assert "planner" in out and "ARS PACA" in out and "vg_" in out
    code, _, err = runner(["token", "revoke", "99"], env)
    assert code == 1 and "no active token" in err


def test_audit_records_authenticated_requests_with_provenance(client, auth, app):
    from service.audit import query

    r = client.get("/api/v1/forecasts?target=icu&territory=75", headers=auth["crisis_cell"])
    assert r.status_code == 200
    client.get("/api/v1/territories")  # public: not audited
    rows, _ = query(app.extensions["vigie"].engine, actor="test-crisis_cell", limit=5)
    row = next(r for r in rows if r["path"] == "/api/v1/forecasts")
    assert row["role"] == "crisis_cell" and row["status"] == 200
    assert row["query"] == "target=icu&territory=75"
    assert row["vintage_id"] == r.headers["X-Vigie-Vintage"]
    assert row["run_id"] == r.headers["X-Vigie-Run"]
    assert row["model_version"] == "ensemble@1.0"
    public_rows, _ = query(app.extensions["vigie"].engine, actor="public")
    assert public_rows == []
    listed = client.get("/api/v1/audit?actor=test-crisis_cell", headers=auth["admin"])
    assert listed.get_json()["items"][0]["actor"] == "test-crisis_cell"


def test_forecast_publication_is_audited(db_url):
    from features.catalog import get_engine
    from service.audit import query, record_publication

    engine = get_engine(db_url)
    record_publication(engine, {"run_id": "r1", "vintage_id": "v1", "model": "ensemble",
                                "model_version": "1.0", "target": "icu"})
    [row], total = query(engine, event="forecast_published")
    assert total == 1 and row["run_id"] == "r1" and row["model_version"] == "ensemble@1.0"


def test_scenario_submission_validates_and_queues(client, auth, app):
    planner = auth["planner"]
    r = client.post("/api/v1/scenarios/runs", json={"name": "nope"}, headers=planner)
    assert r.status_code == 400 and "status_quo" in r.get_json()["details"]["library"]
    r = client.post("/api/v1/scenarios/runs", json={"definition": {"name": "x", "bogus": 1}},
                    headers=planner)
    assert r.status_code == 400 and r.get_json()["details"]["errors"]
    r = client.post("/api/v1/scenarios/runs", json={}, headers=planner)
    assert r.status_code == 400
    r = client.post("/api/v1/scenarios/runs", json={"name": "status_quo"}, headers=planner)
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "queued" and body["submitted_by"] == "test-planner"
    assert r.headers["Location"].endswith(f"/runs/{body['run_id']}")
    polled = client.get(r.headers["Location"], headers=auth["analyst"]).get_json()
    assert polled["status"] == "queued"
    traj = client.get(f"/api/v1/scenarios/runs/{body['run_id']}/trajectories",
                      headers=auth["analyst"])
    assert traj.status_code == 409
