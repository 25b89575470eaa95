"""Property-based run of schemathesis against the served OpenAPI document: for every operation
and generated input, no 5xx, a documented status code and content type, and a body matching
the documented schema. Bounded (a few examples per operation) to keep the suite fast.

Runs as admin and as the anonymous public on a home of its own, so that generated POSTs (job
triggers, scenario runs) only queue rows in a throw-away database. Answers are asked for
uncompressed (``Accept-Encoding: identity``): schemathesis' WSGI transport does not decode
them. The heavier run (hundreds of examples per operation, negative cases, control characters,
unknown parameters, deep and large bodies, optionally on PostgreSQL) is ``bench/api_fuzz.py``.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_fixtures import home_sharing, synthetic_runs

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: Examples per operation: every operation as admin; as the public, role-protected ones answer
#: 401 at once, so fewer examples cover them.
MAX_EXAMPLES = {"admin": 8, "public": 5}


@pytest.fixture(scope="module")
def fuzz_app(real_cube, tmp_path_factory):
    from features.catalog import get_engine
    from features.store import CubeStore
    from service.app import create_app
    from service.auth import create_token

    settings = home_sharing(real_cube, tmp_path_factory.mktemp("fuzz_home"))
    synthetic_runs(settings, CubeStore(settings).current_vintage()["id"])
    app = create_app({"TESTING": False, "SETTINGS": settings, "RATELIMIT_ENABLED": False})
    app.config["FUZZ_TOKEN"] = create_token(get_engine(settings.database_url), "fuzz", "admin")
    return app


@pytest.mark.parametrize("role", ["admin", "public"])
def test_api_conforms_to_its_openapi_document(fuzz_app, role):
    # schemathesis' pytest plugin does not support this pytest yet: drive its Hypothesis
    # strategies directly, one bounded run per operation, and report every failure at once.
    from hypothesis import given

    api_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    headers = {"Accept-Encoding": "identity"}
    if role == "admin":
        headers["Authorization"] = f"Bearer {fuzz_app.config['FUZZ_TOKEN']}"
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES[role], deadline=None, derandomize=True,
                  database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)


HOSTILE = [
    ("unknown", lambda q: {**q, "utm_source": "x", "zz": "1"}),
    ("crlf", lambda q: {**q, "callback": "a\r\nSet-Cookie: b=c"}),
    ("control in a value", lambda q: {k: f"{v}\x00" if isinstance(v, str) else v
                                      for k, v in q.items()} or {"format": "\x85"}),
    ("huge numbers", lambda q: {**q, "page": "9" * 30, "per_page": "-1", "horizon": "1e308"}),
    ("far dates", lambda q: {**q, "start": "0001-01-01", "end": "9999-12-31",
                             "as_of": "1677-09-21", "date": "2262-04-12"}),
]


@pytest.mark.parametrize("role", ["admin", "public"])
def test_no_operation_answers_a_server_error_to_hostile_input(fuzz_app, role):
    """Every operation, a few generated valid requests each, then each made hostile: unknown
    parameters, CR/LF and other control characters, huge numbers, dates outside pandas'
    calendar, a deep JSON body. Any answer but a 5xx is fine (the bounded, valid answers are
    checked above)."""
    api_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    headers = {"Accept-Encoding": "identity"}
    if role == "admin":
        headers["Authorization"] = f"Bearer {fuzz_app.config['FUZZ_TOKEN']}"
    client = fuzz_app.test_client()
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        _hostile_run(result.ok(), client, headers, failures)()
    assert not failures, "\n".join(sorted(set(failures))[:40])


def _hostile_run(operation, client, headers: dict, failures: list[str]):
    from hypothesis import given

    @given(case=operation.as_strategy())
    @settings(max_examples=2, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        path = case.formatted_path
        for name, mutate in HOSTILE:
            query = mutate(dict(case.query or {}))
            resp = client.open(path, method=case.method, query_string=query, headers=headers)
            if resp.status_code >= 500:
                failures.append(f"{operation.label} ({name}): {resp.status_code} {query}")
        if case.method.upper() == "POST":
            deep = "[" * 50_000 + "]" * 50_000
            resp = client.open(path, method="POST", data=deep, headers=headers,
                               content_type="application/json")
            if resp.status_code >= 500:
                failures.append(f"{operation.label} (deep body): {resp.status_code}")

    return run
