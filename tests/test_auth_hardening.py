"""Tokens under attack: a revoked token stops working at once in every process, and refused
tokens are rate-limited per client address."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from features.settings import PROJECT_ROOT


def _app(settings, **config):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False,
                       **config})


def test_token_revoked_by_another_process_is_refused_at_once(db_url, make_settings, tmp_path):
    """Another process (its own engine, its own memory) revokes: the next request is 401."""
    from features.catalog import get_engine
    from service.auth import create_token, list_tokens

    settings = make_settings(tmp_path, database_url=db_url)
    token = create_token(get_engine(db_url), "cellule", "admin")
    client = _app(settings).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/audit", headers=headers).status_code == 200
    assert client.get("/api/v1/audit", headers=headers).status_code == 200  # any cache is warm
    [row] = list_tokens(get_engine(db_url))
    other = sa.create_engine(db_url)  # not this process's engine, no shared Python state
    try:
        with other.begin() as conn:
            conn.execute(sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP "
                                 "WHERE id = :id"), {"id": row["id"]})
    finally:
        other.dispose()
    r = client.get("/api/v1/audit", headers=headers)
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_token"


def test_token_revoked_by_the_cli_is_refused_by_a_running_server(make_settings, tmp_path):
    """``python -m service token revoke`` in a separate OS process; the server refuses at once."""
    from features.catalog import get_engine
    from service.auth import create_token

    settings = make_settings(tmp_path)
    token = create_token(get_engine(settings.database_url), "ARS", "analyst")
    client = _app(settings).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/scenarios/runs", headers=headers).status_code == 200
    env = {**os.environ, "VIGIE_HOME": str(settings.home),
           "VIGIE_DATABASE_URL": settings.database_url, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-m", "service", "token", "revoke", "1"], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert client.get("/api/v1/scenarios/runs", headers=headers).status_code == 401


def test_last_used_is_written_at_most_once_a_minute_per_process(make_settings, tmp_path):
    from features.catalog import get_engine
    from service import auth
    from service.db import api_tokens

    settings = make_settings(tmp_path)
    engine = get_engine(settings.database_url)
    token = auth.create_token(engine, "x", "analyst")
    writes = []

    def count_updates(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE"):
            writes.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count_updates)
    try:
        for _ in range(5):
            assert auth.lookup(engine, token).role == "analyst"
    finally:
        sa.event.remove(engine, "before_cursor_execute", count_updates)
    with engine.connect() as conn:
        assert conn.execute(sa.select(api_tokens.c.last_used_at)).scalar() is not None
    assert len(writes) == 1


@pytest.fixture
def limited(api_settings):
    """An app with rate limits on (memory storage, own prefix) and a failure budget of 3."""
    import uuid

    from service.app import create_app

    app = create_app({"TESTING": True, "SETTINGS": api_settings,
                      "RATELIMIT_AUTH_FAILURES": "3 per minute",
                      "RATELIMIT_STORAGE_URI": "memory://",
                      "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    return app.test_client()


def _get(client, addr, headers=None):
    return client.get("/api/v1/vintages", headers=headers or {},
                      environ_base={"REMOTE_ADDR": addr})


def test_refused_tokens_are_rate_limited_per_client_address(limited, auth):
    bad = {"Authorization": "Bearer vg_guess"}
    codes = [_get(limited, "198.51.100.7", bad).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    r = _get(limited, "198.51.100.7", bad)
    assert r.get_json()["code"] == "rate_limited" and int(r.headers["Retry-After"]) > 0
    # A malformed header spends the budget too.
    other = "198.51.100.8"
    codes = [_get(limited, other, {"Authorization": "Basic abc"}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # The blocked address: any token is refused before lookup; without one it is the public.
    assert _get(limited, "198.51.100.7", auth["admin"]).status_code == 429
    assert _get(limited, "198.51.100.7").status_code == 200
    # Another address is not affected.
    assert _get(limited, "203.0.113.5", bad).status_code == 401
    assert _get(limited, "203.0.113.5", auth["admin"]).status_code == 200


def test_valid_tokens_do_not_spend_the_failure_budget(limited, auth):
    for _ in range(6):
        assert _get(limited, "198.51.100.9", auth["analyst"]).status_code == 200
    assert _get(limited, "198.51.100.9", {"Authorization": "Bearer nope"}).status_code == 401
