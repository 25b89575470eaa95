"""Property-based run of schemathesis against the served OpenAPI document: for every operation
and generated input, no 5xx, a documented status code and content type, and a body matching
the documented schema. Bounded (a few examples per operation) to keep the suite fast.

Runs as admin on a home of its own, so that generated POSTs (job triggers, scenario runs) only
queue rows in a throw-away database.
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

from tests.api_fixtures import copy_catalog, synthetic_runs

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
MAX_EXAMPLES = 8


@pytest.fixture(scope="module")
def fuzz_app(real_cube, tmp_path_factory):
    from features.catalog import get_engine
    from features.settings import Settings
    from features.store import CubeStore
    from service.app import create_app
    from service.auth import create_token

    home = tmp_path_factory.mktemp("fuzz_home")
    settings = Settings.from_env(home=str(home), data_dir=str(real_cube.data_dir),
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    copy_catalog(real_cube, settings)
    synthetic_runs(settings, CubeStore(settings).current_vintage()["id"])
    app = create_app({"TESTING": False, "SETTINGS": settings, "RATELIMIT_ENABLED": False})
    app.config["FUZZ_TOKEN"] = create_token(get_engine(settings.database_url), "fuzz", "admin")
    return app


def test_api_conforms_to_its_openapi_document(fuzz_app):
    # schemathesis' pytest plugin does not support this pytest yet: drive its Hypothesis
    # strategies directly, one bounded run per operation, and report every failure at once.
    from hypothesis import given

    api_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    headers = {"Authorization": f"Bearer {fuzz_app.config['FUZZ_TOKEN']}"}
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
