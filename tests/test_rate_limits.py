"""Rate limits shared by every process through Redis, one bucket per client for the whole API,
and client addresses behind trusted proxies only.

The Redis tests use ``VIGIE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``, the server
these machines and CI run) under a random key prefix, and skip only when it is unreachable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import uuid

import pytest

REDIS_URL = os.environ.get("VIGIE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url():
    """The test Redis URL and a fresh key prefix; the prefix's keys are deleted afterwards."""
    redis = pytest.importorskip("redis", reason="pip install -r requirements.txt (redis)")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    prefix = f"vigie-test-{uuid.uuid4().hex}"
    yield REDIS_URL, prefix
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _process(settings, **config):
    """One 'serve process': its own app, limiter and memory."""
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": settings, **config}).test_client()


def _get(client, path="/api/v1/vintages", addr="192.0.2.10", **headers):
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": addr})


def test_two_processes_share_the_public_limit_through_redis(api_settings, redis_url):
    url, prefix = redis_url
    settings = dataclasses.replace(api_settings, redis_url=url)  # as VIGIE_REDIS_URL would
    config = {"RATELIMIT_PUBLIC": "4 per minute", "RATELIMIT_KEY_PREFIX": prefix}
    a, b = _process(settings, **config), _process(settings, **config)
    codes = [_get(client).status_code for client in (a, b) * 4]
    assert codes.count(200) == 4 and codes.count(429) == 4, codes
    assert codes[:4] == [200] * 4
    # Another client address has its own bucket in both processes.
    assert _get(b, addr="192.0.2.11").status_code == 200


def test_deployments_on_one_redis_do_not_share_counts(api_settings, redis_url):
    url, prefix = redis_url
    settings = dataclasses.replace(api_settings, redis_url=url)
    one = _process(settings, RATELIMIT_PUBLIC="2 per minute", RATELIMIT_KEY_PREFIX=prefix + "a")
    two = _process(settings, RATELIMIT_PUBLIC="2 per minute", RATELIMIT_KEY_PREFIX=prefix + "b")
    assert [_get(one).status_code for _ in range(3)] == [200, 200, 429]
    assert _get(two).status_code == 200


def test_refused_tokens_are_counted_across_processes(api_settings, redis_url):
    url, prefix = redis_url
    settings = dataclasses.replace(api_settings, redis_url=url)
    config = {"RATELIMIT_AUTH_FAILURES": "2 per minute", "RATELIMIT_KEY_PREFIX": prefix}
    a, b = _process(settings, **config), _process(settings, **config)
    bad = {"Authorization": "Bearer vg_guess"}
    codes = [_get(c, **bad).status_code for c in (a, b, a, b)]
    assert codes == [401, 401, 429, 429]


def test_unreachable_redis_falls_back_to_memory_not_to_errors(api_settings):
    pytest.importorskip("redis", reason="pip install -r requirements.txt (redis)")
    settings = dataclasses.replace(api_settings, redis_url="redis://127.0.0.1:1/0")
    client = _process(settings, RATELIMIT_PUBLIC="2 per minute",
                      RATELIMIT_KEY_PREFIX=uuid.uuid4().hex)
    assert [_get(client).status_code for _ in range(3)] == [200, 200, 429]
    assert _get(client, Authorization="Bearer vg_guess").status_code == 401


def test_one_bucket_per_client_for_the_whole_api(api_settings):
    """300 a minute means 300 for the API, not 300 on each of its routes."""
    client = _process(api_settings, RATELIMIT_PUBLIC="3 per minute",
                      RATELIMIT_STORAGE_URI="memory://", RATELIMIT_KEY_PREFIX=uuid.uuid4().hex)
    paths = ["/api/v1/vintages", "/api/v1/scenarios", "/api/v1/models", "/api/v1/vintages"]
    assert [_get(client, p).status_code for p in paths] == [200, 200, 200, 429]
    assert _get(client, "/healthz").status_code == 200  # probes are never limited


# ---------------------------------------------------------------------------- proxies
def test_forged_forwarded_for_does_not_choose_the_bucket_without_trusted_proxies(api_settings):
    client = _process(api_settings, RATELIMIT_PUBLIC="2 per minute",
                      RATELIMIT_STORAGE_URI="memory://", RATELIMIT_KEY_PREFIX=uuid.uuid4().hex)
    codes = [_get(client, **{"X-Forwarded-For": f"10.9.9.{i}"}).status_code for i in range(3)]
    assert codes == [200, 200, 429]


@pytest.mark.parametrize("trusted", ["1", "127.0.0.1", "127.0.0.0/8, ::1"])
def test_clients_behind_a_trusted_proxy_have_their_own_buckets(api_settings, trusted):
    settings = dataclasses.replace(api_settings, trusted_proxies=trusted)
    client = _process(settings, RATELIMIT_PUBLIC="2 per minute",
                      RATELIMIT_STORAGE_URI="memory://", RATELIMIT_KEY_PREFIX=uuid.uuid4().hex)

    def via_proxy(client_addr):
        return _get(client, addr="127.0.0.1", **{"X-Forwarded-For": client_addr}).status_code

    assert [via_proxy("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert via_proxy("198.51.100.2") == 200  # before the fix: the proxy's one shared bucket
    # What the client wrote left of the proxy's entry is not read.
    assert via_proxy("203.0.113.77, 198.51.100.1") == 429


def test_client_address_rules():
    from service.ratelimit import client_address, parse_trusted_proxies

    nets = parse_trusted_proxies("10.0.0.5, 10.1.0.0/16")
    assert nets == (ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("10.1.0.0/16"))
    assert parse_trusted_proxies("") == 0 and parse_trusted_proxies("2") == 2
    with pytest.raises(ValueError):
        parse_trusted_proxies("proxy.example")
    # No trust: the peer, whatever the header says.
    assert client_address("203.0.113.9", "1.2.3.4", 0) == "203.0.113.9"
    # Hops: the n-th from the right; too few entries: the peer.
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4", 1) == "1.2.3.4"
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.1.2.3", 2) == "1.2.3.4"
    assert client_address("10.0.0.5", "1.2.3.4", 2) == "10.0.0.5"
    assert client_address("10.0.0.5", "garbage", 1) == "10.0.0.5"
    # Networks: only from a trusted peer, skipping trusted hops from the right.
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.1.2.3", nets) == "1.2.3.4"
    assert client_address("203.0.113.9", "1.2.3.4", nets) == "203.0.113.9"
    assert client_address("10.0.0.5", "10.1.0.1", nets) == "10.1.0.1"
    assert client_address("10.0.0.5", "nonsense, 10.1.0.1", nets) == "10.1.0.1"
    assert client_address("10.0.0.5", "", nets) == "10.0.0.5"


def test_audit_rows_carry_the_client_address_behind_a_proxy(api_settings, auth):
    from features.catalog import get_engine
    from service.audit import query

    settings = dataclasses.replace(api_settings, trusted_proxies="1")
    client = _process(settings, RATELIMIT_ENABLED=False)
    r = _get(client, addr="127.0.0.1", **auth["analyst"], **{"X-Forwarded-For": "198.51.100.44"})
    assert r.status_code == 200
    rows, _ = query(get_engine(settings.database_url), actor="test-analyst", limit=1)
    assert rows[0]["remote_addr"] == "198.51.100.44"


def test_the_servers_warm_up_spends_no_clients_budget(api_settings):
    from service.app import create_app
    from service.cli.serve import warm_up

    app = create_app({"TESTING": True, "SETTINGS": api_settings, "RATELIMIT_PUBLIC": "2 per minute",
                      "RATELIMIT_STORAGE_URI": "memory://",
                      "RATELIMIT_KEY_PREFIX": uuid.uuid4().hex})
    warm_up(app)  # its requests come from 127.0.0.1 too
    client = app.test_client()
    assert [_get(client, addr="127.0.0.1").status_code for _ in range(3)] == [200, 200, 429]
    # A client sending a header of that name is still limited.
    assert _get(client, addr="127.0.0.1", **{"Vigie-Internal-Request": "1"}).status_code == 429
