"""The WSGI fast path of cached reads (service/fastpath.py) answers exactly what Flask answers.

Two apps on one home, rate limits on (each its own in-memory counters): one with the fast path,
one without. Every request is sent to both, one right after the other, several times in a row
(the first renders, the second is Flask's cache hit the fast path learns from, the next ones
are the fast path's): status, every header in order (the rate-limit reset and Retry-After
within a second or two: they are clocks) and body must be the same, the audit rows the same
(but their request ids and times), the rate-limit counts the same (the X-RateLimit-Remaining
header is compared), the Prometheus request counters the same. And the fast path must have
answered most of them: a fast path that never serves would pass the rest."""

from __future__ import annotations

import re
import time

import pytest

URL = "/api/v1/forecasts?target=icu&territory=75"
CLOCKS = ("X-RateLimit-Reset", "Retry-After", "Date")
ADDRESS = {False: "192.0.2.44", True: "192.0.2.45"}


def _app(settings, fast: bool, **config):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": settings, "FAST_PATH": fast,
                       "RATELIMIT_ENABLED": True, "RATELIMIT_PUBLIC": "1000 per minute",
                       "RATELIMIT_TOKEN": "1000 per minute", "TOKEN_CACHE_SECONDS": 0.2,
                       **config})


@pytest.fixture
def pair(api_settings):
    return _app(api_settings, False), _app(api_settings, True)


@pytest.fixture(scope="module")
def city(api_settings):
    from features.catalog import get_engine
    from service.auth import create_token

    token = create_token(get_engine(api_settings.database_url), "fast-city", "city",
                         territories=["35238"])
    return {"Authorization": f"Bearer {token}"}


def _send(app, method: str, url: str, headers: dict):
    """One request from the app's own client address (its audit rows are told apart by it)."""
    client = app.test_client()
    return client.open(url, method=method, headers=headers,
                       environ_base={"REMOTE_ADDR": ADDRESS[app.config["FAST_PATH"]]})


def _same(slow, fast, what) -> None:
    assert fast.status == slow.status, what
    assert fast.get_data() == slow.get_data(), what
    plain = [(k, v) for k, v in slow.headers.items() if k not in CLOCKS]
    assert [(k, v) for k, v in fast.headers.items() if k not in CLOCKS] == plain, what
    assert [k for k, _ in fast.headers.items()] == [k for k, _ in slow.headers.items()], what
    for name in CLOCKS:
        if name in slow.headers:
            a, b = (_seconds(r.headers[name]) for r in (slow, fast))
            # Date is the answer's own clock; the rate-limit clocks count from each app's own
            # window, opened by its first request (seconds apart on a loaded machine).
            assert abs(a - b) <= (2 if name == "Date" else 10), (what, name)


def _seconds(value: str) -> float:
    from werkzeug.http import parse_date

    return float(value) if value.isdigit() else parse_date(value).timestamp()


def _audit(settings, actors, since: int) -> list[dict]:
    import sqlalchemy as sa

    from features.catalog import get_engine
    from service.audit import ship_pending
    from service.db import audit_log

    engine = get_engine(settings.database_url)
    ship_pending(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).where(audit_log.c.id > since,
                                                       audit_log.c.actor.in_(actors))
                            .order_by(audit_log.c.id)).mappings().all()
    return [{k: v for k, v in r.items() if k not in ("id", "request_id", "at")} for r in rows]


def _last_id(settings) -> int:
    import sqlalchemy as sa

    from features.catalog import get_engine
    from service.db import audit_log

    with get_engine(settings.database_url).connect() as conn:
        return conn.execute(sa.select(sa.func.max(audit_log.c.id))).scalar() or 0


def _counters(app) -> list[str]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return sorted(line for line in text.splitlines()
                  if line.startswith("vigie_http_requests_total{") and "/metrics" not in line)


def test_fast_answers_equal_flask_answers(pair, auth, city, api_settings):
    slow, fast = pair
    etag = _send(slow, "GET", URL, {}).headers["ETag"]
    assert _send(fast, "GET", URL, {}).headers["ETag"] == etag
    analyst = auth["analyst"]
    cases = [
        ("GET", URL, {}),
        ("GET", URL, analyst),
        ("GET", URL, city),
        ("HEAD", URL, analyst),
        ("GET", URL, {**analyst, "If-None-Match": etag}),
        ("GET", URL, {"If-None-Match": etag}),
        ("GET", URL, {**analyst, "If-None-Match": '"not-it"'}),
        ("GET", URL, {**analyst, "Accept-Encoding": "br"}),
        ("GET", "/api/v1/forecasts?territory=75&target=icu", analyst),
        ("GET", URL + "&unknown=1", {}),
        ("GET", URL + "&territory=13", analyst),
        ("GET", "/api/v1/territories?per_page=3", auth["planner"]),
        ("GET", URL + "&padding=" + "x" * 3000, analyst),  # a long key: never kept, Flask's
        ("GET", "/api/v1/forecasts?target=icu&territory=999", analyst),  # an error: Flask's
        ("GET", URL, {"Authorization": "Bearer vg_not-a-token"}),       # refused: Flask's
        ("GET", URL, {"Authorization": "Basic abc"}),
    ]
    since = _last_id(api_settings)
    path = fast.extensions["vigie"].extra["fast_path"]
    served = []
    for method, url, headers in cases:
        before = path.served
        for i in range(4):
            _same(_send(slow, method, url, headers), _send(fast, method, url, headers),
                  (method, url, sorted(headers), i))
        served.append(path.served - before)
    # Each cacheable request: at least the last 2 of its 4 sends (the first may render, the
    # next teaches; a key already cached teaches on the first); the others never.
    assert all(n >= 2 for n in served[:-4]) and served[-4:] == [0, 0, 0, 0], served
    rows = _audit(api_settings, ["test-analyst", "test-planner", "fast-city"], since)
    mine = {flag: [{**r, "remote_addr": None} for r in rows if r["remote_addr"] == address]
            for flag, address in ADDRESS.items()}
    assert mine[True] == mine[False]  # each app's journal ships its rows in order
    assert len(mine[True]) == 4 * 11 and len(rows) == 2 * 4 * 11  # 11 authenticated cases
    assert {r["details"]["territories"][0] for r in rows if r["actor"] == "fast-city"} == \
        {"35238"}
    assert _counters(fast) == _counters(slow)


def test_rate_limit_spent_the_same_way(api_settings, auth):
    """The token's budget: 5 requests pass, then Flask's 429, with or without the fast path;
    the public's budget is per address, apart from it."""
    slow = _app(api_settings, False, RATELIMIT_TOKEN="5 per minute",
                RATELIMIT_PUBLIC="3 per minute")
    fast = _app(api_settings, True, RATELIMIT_TOKEN="5 per minute",
                RATELIMIT_PUBLIC="3 per minute")
    codes = []
    for headers in [auth["crisis_cell"]] * 7 + [{}] * 5:
        a, b = _send(slow, "GET", URL, headers), _send(fast, "GET", URL, headers)
        _same(a, b, headers)
        codes.append(b.status_code)
    assert codes == [200] * 5 + [429] * 2 + [200] * 3 + [429] * 2
    assert fast.extensions["vigie"].extra["fast_path"].served == 3 + 1


def test_revoked_token_refused_within_the_bound(api_settings):
    from features.catalog import get_engine
    from service.auth import create_token, list_tokens, revoke_token

    engine = get_engine(api_settings.database_url)
    token = create_token(engine, "fast-revoked", "analyst")
    headers = {"Authorization": f"Bearer {token}"}
    fast = _app(api_settings, True)
    assert [_send(fast, "GET", URL, headers).status_code for _ in range(3)] == [200] * 3
    path = fast.extensions["vigie"].extra["fast_path"]
    assert path.served == 1
    token_id = next(t["id"] for t in list_tokens(engine) if t["name"] == "fast-revoked")
    assert revoke_token(engine, token_id)
    time.sleep(0.25)  # TOKEN_CACHE_SECONDS (0.2) after the revocation: refused
    answer = _send(fast, "GET", URL, headers)
    assert answer.status_code == 401 and answer.json["code"] == "invalid_token"
    assert path.served == 1


def test_stale_template_not_served(api_settings, auth):
    """A template whose cached answer left the response cache is not used: Flask answers (and
    the fast path learns again)."""
    fast = _app(api_settings, True)
    for _ in range(3):
        _send(fast, "GET", URL, auth["analyst"])
    path = fast.extensions["vigie"].extra["fast_path"]
    assert path.served == 1
    fast.extensions["vigie"].cache.clear()
    assert _send(fast, "GET", URL, auth["analyst"]).status_code == 200
    assert path.served == 1
    assert re.fullmatch(r'"[0-9a-f]{24}"', _send(fast, "GET", URL, auth["analyst"])
                        .headers["ETag"])
    _send(fast, "GET", URL, auth["analyst"])
    assert path.served == 2
