"""Bounds on the work a client controls (issue 13, "resource exhaustion"): the response cache
keyed on validated arguments and capped in bytes, control characters answered 400, the Link
header built from validated values, body size and JSON depth limits checked after the role
and before the body is parsed, and security headers on every answer."""

from __future__ import annotations

import json
import random
import re

import pytest

from service.guards import json_depth

LIST = "/api/v1/indicators"
CONTROL = ["\r", "\n", "\r\n", "\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f"]


def _error_shape(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:300])
    body = resp.get_json()
    assert set(body) == {"code", "message", "details"}, body
    if code:
        assert body["code"] == code, body
    return body


# ---------------------------------------------------------------------------- response cache
def test_unknown_parameters_never_grow_the_cache(app):
    """5,000 anonymous requests with random unknown, reordered and repeated parameters over 6
    distinct validated queries: 6 entries, all under the byte cap (the raw query string keyed
    the cache before: one full body per request, up to 2,048)."""
    client = app.test_client()
    cache = app.extensions["vigie"].cache
    cache.clear()
    rng = random.Random(13)
    valid = [{"per_page": str(n)} for n in (1, 2, 3)] + [
        {"per_page": str(n), "format": "csv"} for n in (1, 2)] + [{}]
    statuses = set()
    for i in range(5000):
        params = list(valid[i % len(valid)].items())
        params += [(f"u{rng.randrange(10**9)}", str(rng.random()))
                   for _ in range(rng.randrange(1, 4))]
        if params and rng.random() < 0.3:
            params.append(params[0])  # repeated
        rng.shuffle(params)
        statuses.add(client.get(LIST, query_string=params).status_code)
    assert statuses == {200}
    assert len(cache) == len(valid)
    assert cache.bytes <= cache.max_bytes
    # Defaults written out are the same validated query: still 6 entries.
    assert client.get(LIST, query_string={"per_page": "100", "page": "1",
                                           "format": "json"}).status_code == 200
    assert len(cache) == len(valid)


def test_cache_stays_under_its_byte_cap(api_settings):
    from service.app import create_app

    app = create_app({"TESTING": True, "SETTINGS": api_settings, "RATELIMIT_ENABLED": False,
                      "RESPONSE_CACHE_BYTES": 40_000})
    client = app.test_client()
    cache = app.extensions["vigie"].cache
    sizes = []
    for n in range(1, 40):
        resp = client.get(LIST, query_string={"per_page": n})
        assert resp.status_code == 200
        sizes.append(len(resp.get_data()))
        assert cache.bytes <= 40_000
    assert sum(sizes) > 40_000  # the cap was reached, so entries were evicted
    assert 0 < len(cache) < 39
    # An answer evicted is rebuilt, identical.
    again = client.get(LIST, query_string={"per_page": 1})
    assert len(again.get_data()) == sizes[0]


def test_cache_fast_path_serves_what_the_view_would(app):
    client = app.test_client()
    cache = app.extensions["vigie"].cache
    cache.clear()
    first = client.get(LIST, query_string={"per_page": 2, "sep": ";"})
    hits = cache.hits
    second = client.get(LIST, query_string=[("zz", "1"), ("sep", ";"), ("per_page", "2")])
    assert cache.hits == hits + 1
    assert second.get_data() == first.get_data()
    assert second.headers["ETag"] == first.headers["ETag"]
    # An invalid query is never served from the cache: the view's validation answers it.
    _error_shape(client.get(LIST, query_string={"per_page": "0"}), 400, "invalid_input")


# ---------------------------------------------------------------------------- Link header
def test_link_header_is_built_from_validated_values_only(app):
    client = app.test_client()
    app.extensions["vigie"].cache.clear()
    resp = client.get(LIST, query_string=[("per_page", "2"), ("utm_source", "x<y>z"),
                                          ("sep", ";")])
    assert resp.status_code == 200
    link = resp.headers["Link"]
    assert "utm_source" not in link and "<y>" not in link
    assert "sep=%3B" in link and "per_page=2" in link
    targets = re.findall(r"<([^>]*)>", link)
    assert targets and all(t.startswith("/api/v1/indicators?") for t in targets)
    # A second caller (same validated query) gets the same, clean header from the cache.
    again = client.get(LIST, query_string={"per_page": "2", "sep": ";", "other": "1"})
    assert again.headers["Link"] == link


def test_link_header_percent_encodes_values(app):
    client = app.test_client()
    resp = client.get("/api/v1/territories", query_string={"q": "Saint & Co=1", "per_page": 1})
    assert resp.status_code == 200
    link = resp.headers.get("Link")
    if link:  # only when the search matches more than one page
        assert "q=Saint+%26+Co%3D1" in link


# ---------------------------------------------------------------------------- control characters
@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize("where", ["value", "unknown", "key"])
def test_control_characters_in_the_query_are_400(app, char, where):
    client = app.test_client()
    params = {"per_page": "2"}
    if where == "value":
        params["sep"] = f";{char}Set-Cookie: a=b"
    elif where == "unknown":
        params["utm"] = f"x{char}y"
    else:
        params[f"k{char}"] = "1"
    body = _error_shape(client.get(LIST, query_string=params), 400, "invalid_input")
    assert "control character" in body["message"]


@pytest.mark.parametrize("path", [
    "/api/v1/indicators/inc%0Ahosp", "/api/v1/territories/75%0D%0A", "/api/v1/models/a%00b",
    "/api/v1/risk/69%1B", "/api/v1/forecasts/runs/x%7F",
])
def test_control_characters_in_the_path_are_400(app, path):
    _error_shape(app.test_client().get(path), 400, "invalid_input")


@pytest.mark.parametrize("path", ["/api/v1/data", "/api/v1/territories", "/api/v1/alerts",
                                  "/api/v1/forecasts", "/api/v1/risk", "/api/v1/models",
                                  "/api/v1/vintages", "/api/v1/forecasts/runs"])
def test_crlf_in_any_list_query_is_400_not_500(app, auth, path):
    for headers in (auth["public"], auth["admin"]):
        resp = app.test_client().get(path, query_string={"x": "a\r\nSet-Cookie: y=1"},
                                     headers=headers)
        _error_shape(resp, 400, "invalid_input")


# ---------------------------------------------------------------------------- bodies
def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("path", "role"), [("/api/v1/scenarios/runs", "planner"),
                                            ("/api/v1/jobs/ingest/run", "admin")])
def test_role_is_checked_before_the_body_is_read(app, auth, path, role):
    client = app.test_client()
    bodies = [_deep(100_000), "{not json", json.dumps({"definition": {"name": "x" * 10}}),
              "x" * (2 * 1024 * 1024)]
    for body in bodies:
        resp = client.post(path, data=body, content_type="application/json")
        _error_shape(resp, 401, "authentication_required")
        resp = client.post(path, data=body, content_type="application/json",
                           headers=auth["analyst"])
        _error_shape(resp, 403, "forbidden")


def test_deep_json_is_400_and_large_body_413_for_an_allowed_role(app, auth):
    client = app.test_client()
    path, admin = "/api/v1/jobs/ingest/run", auth["admin"]
    for depth in (33, 1000, 100_000):
        body = _error_shape(client.post(path, data=_deep(depth), headers=admin,
                                        content_type="application/json"), 400, "invalid_input")
        assert body["details"]["limit_depth"] == 32
    nested = {"params": {}}
    inner = nested["params"]
    for _ in range(30):  # 32 levels in all: accepted by the depth check
        inner["a"] = {}
        inner = inner["a"]
    resp = client.post(path, data=json.dumps(nested), headers=admin,
                       content_type="application/json")
    assert resp.status_code != 400 or "nested" not in resp.get_json()["message"]
    big = json.dumps({"params": {"x": "y" * (1024 * 1024)}})
    body = _error_shape(client.post(path, data=big, headers=admin,
                                    content_type="application/json"), 413, "too_large")
    assert body["details"]["limit_bytes"] == 1024 * 1024


@pytest.mark.parametrize(("text", "depth"), [
    ("", 0), ("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4),
    ('["[[[[", "\\"[[[", {"k]]": "{{"}]', 2), ('"\\\\"', 0), ('["\\\\", [[]]]', 3),
])
def test_json_depth_counts_structure_not_strings(text, depth):
    assert json_depth(text.encode()) == depth


# ---------------------------------------------------------------------------- headers
@pytest.mark.parametrize("path", ["/api/v1/indicators", "/api/v1/nothing-here", "/healthz",
                                  "/api/v1/docs", "/api/v1/openapi.json", "/"])
def test_security_headers_on_every_answer(app, path):
    resp = app.test_client().get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_swagger_page_inline_script_is_allowed_by_its_hash(app):
    import base64
    import hashlib

    resp = app.test_client().get("/api/v1/docs")
    html = resp.get_data(as_text=True)
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert scripts
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in resp.headers["Content-Security-Policy"]


def test_dashboard_pages_carry_no_inline_executable_script(app):
    client = app.test_client()
    for path in ("/", "/scenarios", "/precision", "/methodes", "/territoire/69"):
        resp = client.get(path)
        if resp.status_code != 200:
            continue
        for attrs, script in re.findall(r"<script([^>]*)>(.*?)</script>",
                                        resp.get_data(as_text=True), re.S):
            assert "src=" in attrs or "application/json" in attrs or not script.strip(), path
        assert "script-src 'self';" in resp.headers["Content-Security-Policy"], path


def test_metrics_report_the_cache_size(app):
    client = app.test_client()
    client.get(LIST, query_string={"per_page": 3})
    text = client.get("/metrics").get_data(as_text=True)
    cache = app.extensions["vigie"].cache
    assert f"vigie_response_cache_bytes {float(cache.bytes)}" in text
    assert f"vigie_response_cache_entries {float(len(cache))}" in text


# ---------------------------------------------------------------------------- OpenAPI bounds
def test_every_query_parameter_is_bounded_in_the_openapi_document(app):
    """Numbers have a maximum, text a maximum length, an enum or a pattern, dates a format:
    what the API accepts is written in the document clients and fuzzers read."""
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    seen = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param["in"] != "query":
                    continue
                seen += 1
                schema, where = param["schema"], f"{method.upper()} {path} {param['name']}"
                if schema.get("type") in ("integer", "number"):
                    assert "maximum" in schema and "minimum" in schema, where
                elif schema.get("type") == "string":
                    assert ("maxLength" in schema or "enum" in schema or "pattern" in schema
                            or schema.get("format") == "date"), where
    assert seen > 40
    body = spec["components"]["schemas"]["ScenarioRunIn"]["properties"]
    assert "at most 120 territories" in body["definition"]["description"]
    assert "max_los ≤ 180" in body["definition"]["description"]


def test_a_control_character_leaves_an_audit_row_on_every_database(real_cube, make_settings,
                                                                    db_url):
    """PostgreSQL refuses NUL in text: the audit row of an authenticated request whose path
    held one was lost (logged), so a token could probe without a trace."""
    from features.catalog import get_engine
    from service.app import create_app
    from service.audit import query
    from service.auth import create_token
    from tests.api_fixtures import copy_catalog

    settings = make_settings(real_cube.data_dir, database_url=db_url)
    app = create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False})
    copy_catalog(real_cube, settings)
    engine = get_engine(settings.database_url)
    token = create_token(engine, "prober", "analyst")
    resp = app.test_client().get("/api/v1/territories/ab%00cd%0A",
                                 headers={"Authorization": f"Bearer {token}"})
    _error_shape(resp, 400, "invalid_input")
    rows, _ = query(engine, actor="prober")  # the audit trail's read path
    assert [r["path"] for r in rows] == ["/api/v1/territories/ab%00cd%0A"]
