"""Tokens under attack: a revoked token stops working in every process within the token cache's
bound (TOKEN_CACHE_SECONDS; at once without the cache), and refused tokens are rate-limited per
client address."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from features.settings import PROJECT_ROOT


def _app(settings, **config):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False,
                       **config})


def _refused_within(client, url, headers, bound: float) -> float:
    """Seconds until ``client`` answers 401 to ``headers`` (fails past ``bound``)."""
    start = time.monotonic()
    while True:
        r = client.get(url, headers=headers)
        elapsed = time.monotonic() - start
        if r.status_code == 401:
            assert r.get_json()["code"] == "invalid_token"
            return elapsed
        assert r.status_code == 200, r.get_json()
        assert elapsed <= bound, f"revoked token still accepted after {elapsed:.2f}s"
        time.sleep(0.02)


def test_token_revoked_by_another_process_is_refused_within_the_bound(db_url, make_settings,
                                                                       tmp_path):
    """Another process (its own engine, its own memory) revokes with plain SQL: the trigger
    moves the generation, and the cached token is refused within TOKEN_CACHE_SECONDS."""
    from features.catalog import get_engine
    from service.auth import create_token, list_tokens

    settings = make_settings(tmp_path, database_url=db_url)
    token = create_token(get_engine(db_url), "cellule", "admin")
    client = _app(settings, TOKEN_CACHE_SECONDS=0.5).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/audit", headers=headers).status_code == 200
    assert client.get("/api/v1/audit", headers=headers).status_code == 200  # the cache is warm
    [row] = list_tokens(get_engine(db_url))
    other = sa.create_engine(db_url)  # not this process's engine, no shared Python state
    try:
        with other.begin() as conn:
            conn.execute(sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP "
                                 "WHERE id = :id"), {"id": row["id"]})
    finally:
        other.dispose()
    _refused_within(client, "/api/v1/audit", headers, 0.5 + 0.3)


def test_without_token_cache_a_revocation_is_refused_at_once(db_url, make_settings, tmp_path):
    from features.catalog import get_engine
    from service.auth import create_token, list_tokens, revoke_token

    settings = make_settings(tmp_path, database_url=db_url)
    token = create_token(get_engine(db_url), "cellule", "admin")
    client = _app(settings, TOKEN_CACHE_SECONDS=0).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/audit", headers=headers).status_code == 200
    [row] = list_tokens(get_engine(db_url))
    assert revoke_token(sa.create_engine(db_url), row["id"])
    assert client.get("/api/v1/audit", headers=headers).status_code == 401


def test_the_token_cache_answers_from_memory_until_the_generation_moves(make_settings,
                                                                        tmp_path):
    """Cached: no token row read per request; a revocation of ANOTHER token moves the
    generation and makes this process verify again (and still accept this one)."""
    from features.catalog import get_engine
    from service import auth

    settings = make_settings(tmp_path)
    engine = get_engine(settings.database_url)
    token = auth.create_token(engine, "a", "analyst")
    other = auth.create_token(engine, "b", "analyst")
    auth._verified.clear()
    reads = []

    def count(conn, cursor, statement, *args):
        if "api_tokens" in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            assert auth.lookup(engine, token, max_age=60).name == "a"
        assert len(reads) == 1
        [_, second] = auth.list_tokens(engine)
        auth.revoke_token(engine, second["id"])
        auth._verified._generation.clear()  # as if max_age had passed
        assert auth.lookup(engine, token, max_age=60).name == "a"
        assert auth.lookup(engine, other, max_age=60) is None
        assert len(reads) == 4  # list_tokens, then both tokens verified again
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


TWO_PROCESS_CHILD = """
import json, sys, time
from service.app import create_app
from features.settings import Settings
settings = Settings.from_env()
client = create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False,
                     "TOKEN_CACHE_SECONDS": 0.5}).test_client()
headers = {"Authorization": "Bearer " + sys.argv[1]}
warm = [client.get("/api/v1/scenarios/runs", headers=headers).status_code for _ in range(3)]
print(json.dumps({"warm": warm}), flush=True)
sys.stdin.readline()  # the parent revoked
start = time.monotonic()
while True:
    status = client.get("/api/v1/scenarios/runs", headers=headers).status_code
    if status != 200 or time.monotonic() - start > 5:
        break
    time.sleep(0.02)
print(json.dumps({"status": status, "after": time.monotonic() - start}), flush=True)
"""


def test_revocation_reaches_two_serving_processes_on_one_database(db_url, make_settings,
                                                                   tmp_path):
    """Two app instances in two OS processes on one database (SQLite file or PostgreSQL),
    both with their token cache warm; one revokes: both refuse within the bound."""
    import json

    from features.catalog import get_engine
    from service.auth import create_token, list_tokens, revoke_token

    settings = make_settings(tmp_path, database_url=db_url)
    token = create_token(get_engine(db_url), "ARS", "analyst")
    env = {**os.environ, "VIGIE_HOME": str(settings.home), "VIGIE_DATABASE_URL": db_url,
           "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", TWO_PROCESS_CHILD, token], env=env,
                             cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert json.loads(child.stdout.readline()) == {"warm": [200, 200, 200]}
        client = _app(settings, TOKEN_CACHE_SECONDS=0.5).test_client()
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/scenarios/runs", headers=headers).status_code == 200
        [row] = list_tokens(get_engine(db_url))
        assert revoke_token(get_engine(db_url), row["id"])
        child.stdin.write("revoked\n")
        child.stdin.flush()
        _refused_within(client, "/api/v1/scenarios/runs", headers, 0.8)
        answer = json.loads(child.stdout.readline())
        assert answer["status"] == 401 and answer["after"] <= 0.8, answer
    finally:
        child.kill()
        child.wait()


def test_token_revoked_by_the_cli_is_refused_by_a_running_server(make_settings, tmp_path):
    """``python -m service token revoke`` in a separate OS process; the server refuses within
    the bound (default TOKEN_CACHE_SECONDS: 1 s)."""
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
    _refused_within(client, "/api/v1/scenarios/runs", headers, 1.0 + 0.3)


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
