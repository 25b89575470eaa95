"""Fixtures of the service tests: ``api_settings`` (a home sharing the real cube), ``app``,
``client``, ``runner``, ``auth`` (a token per role), ``forecast_runs`` and ``db_url``
(SQLite, and PostgreSQL when ``VIGIE_TEST_DATABASE_URL`` is set).

The API home has its own database (tokens, audit, jobs are written there) whose catalog points
at the vintage of the session's read-only ``real_cube``: no second ingest, nothing written into
``real_cube``.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from features.settings import Settings

ROLES = ("analyst", "planner", "crisis_cell", "admin")
PG_ENV = "VIGIE_TEST_DATABASE_URL"


def copy_catalog(source: Settings, target: Settings) -> None:
    """Register ``source``'s vintages in ``target``'s (new) database."""
    from features.catalog import get_engine, vintages

    rows = []
    with get_engine(source.database_url).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(vintages))]
    with get_engine(target.database_url).begin() as conn:
        for row in rows:
            conn.execute(vintages.insert().values(**row))


def home_sharing(source: Settings, home: Path) -> Settings:
    """Settings of the home ``home`` (made if missing; its own SQLite database) serving
    ``source``'s vintages: their catalog rows are copied, nothing is ingested again."""
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(home=str(home), data_dir=str(source.data_dir),
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    copy_catalog(source, settings)
    return settings


def synthetic_runs(settings: Settings, vintage_id: str) -> dict[str, str]:
    """Store small forecast runs (icu daily by département and FR; inc_hosp weekly FR) with
    known quantiles, so that alerts and suppression have exact expected answers."""
    from scipy import stats

    from models.base import QUANTILES
    from models.store import ForecastStore

    store = ForecastStore.from_settings(settings)
    out = {}

    def rows(target: str, ends: list[tuple[str, str]], locations: dict[str, float],
             forecast_date: str) -> pd.DataFrame:
        records = []
        for label, end in ends:
            for loc, median in locations.items():
                for q in QUANTILES:
                    # Normal(median, 20 % of median): P(X > C) is known in closed form.
                    value = median + stats.norm.ppf(q) * 0.2 * median
                    records.append((forecast_date, label, end, loc, "quantile", q,
                                    round(max(value, 0.0), 3)))
        return pd.DataFrame(records, columns=["forecast_date", "target", "target_end_date",
                                              "location", "type", "quantile", "value"])

    icu_deps = {"75": 800.0, "13": 150.0, "48": 4.0, "01": 25.0}
    run = store.save(rows("icu", [("7 day ahead icu", "2021-01-08"),
                                  ("14 day ahead icu", "2021-01-15")], icu_deps, "2021-01-01"),
                     {"target": "icu", "frequency": "daily", "level": "department",
                      "model": "ensemble", "model_version": "1.0", "vintage_id": vintage_id,
                      "as_of": "2021-01-01"})
    out["icu_department"] = run.run_id
    run = store.save(rows("inc_hosp", [(f"{h} wk ahead inc hosp", d) for h, d in
                                       ((1, "2021-01-09"), (2, "2021-01-16"))],
                          {"FR": 10_000.0}, "2021-01-04"),
                     {"target": "inc_hosp", "frequency": "weekly", "level": "national",
                      "model": "ensemble", "model_version": "1.0", "vintage_id": vintage_id,
                      "as_of": "2021-01-04"})
    out["inc_hosp_national"] = run.run_id
    return out


@pytest.fixture(scope="session")
def api_settings(real_cube: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home for the API tests: its own SQLite database, the real cube's vintage, forecasts."""
    settings = home_sharing(real_cube, tmp_path_factory.mktemp("api_home"))
    from features.store import CubeStore

    vintage = CubeStore(settings).current_vintage()["id"]
    synthetic_runs(settings, vintage)
    return settings


@pytest.fixture(scope="session")
def city_settings(real_cube: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The city pages' home (tests/city_fixtures.py: the real data and the synthetic city file
    ingested, baseline forecasts), built once for test_dashboard_city and
    test_dashboard_city_browser (they add tokens and audit rows, nothing they read)."""
    from tests.city_fixtures import city_forecasts, city_home

    settings = city_home(real_cube, tmp_path_factory.mktemp("city"))
    city_forecasts(settings)
    return settings


@pytest.fixture(scope="session")
def signals_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home holding one vintage of the synthetic cube with the leading signals, R(t) and an
    EPCI (tests/synthetic_cube.py ``signals_cube``): exact expected answers, no ingest."""
    from features.store import CubeStore
    from tests.synthetic_cube import signals_cube

    home = tmp_path_factory.mktemp("signals_home")
    settings = Settings.from_env(home=str(home), data_dir=str(home),
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    CubeStore(settings).write_vintage(signals_cube(), {}, {"data_dir": str(home)})
    return settings


@pytest.fixture
def signals_client(signals_settings: Settings):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": signals_settings,
                       "RATELIMIT_ENABLED": False}).test_client()


@pytest.fixture(scope="session")
def signals_token(signals_settings: Settings) -> dict[str, str]:
    """Headers of an analyst token on the signals home."""
    from features.catalog import get_engine
    from service.auth import create_token

    token = create_token(get_engine(signals_settings.database_url), "signals-analyst", "analyst")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def auth(api_settings: Settings) -> dict[str, dict[str, str]]:
    """Role → request headers carrying a token of that role (``public`` → no header)."""
    from features.catalog import get_engine
    from service.auth import create_token

    engine = get_engine(api_settings.database_url)
    headers = {"public": {}}
    for role in ROLES:
        token = create_token(engine, f"test-{role}", role)
        headers[role] = {"Authorization": f"Bearer {token}"}
    return headers


@pytest.fixture
def synthetic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``VIGIE_HOME`` in ``tmp_path`` holding one vintage of the weekly synthetic cube
    (tests/synthetic_cube.py: 01, 69, 2A, R84, R94, FR; 50 weeks), no database URL: the
    command line's tests (forecast, backtest, score, cube export)."""
    from features.store import CubeStore
    from tests.synthetic_cube import synthetic_cube

    monkeypatch.setenv("VIGIE_HOME", str(tmp_path))
    monkeypatch.delenv("VIGIE_DATABASE_URL", raising=False)
    CubeStore(Settings.from_env()).write_vintage(
        {"weekly": synthetic_cube("weekly", periods=50)}, {}, {"data_dir": str(tmp_path)})
    return tmp_path


@pytest.fixture
def app(api_settings: Settings):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": api_settings,
                       "RATELIMIT_ENABLED": False})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch):
    """Run ``python -m service …`` in-process with an environment; (exit code, out, err)."""
    from service.cli import main

    def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(args)
        return code, out.getvalue(), err.getvalue()

    return _run


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url():
    """A PostgreSQL URL on a fresh schema (dropped afterwards), or a skip with the reason."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL variant: set {PG_ENV} (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test) to run it")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(base, schema)
    finally:
        from features.catalog import get_engine

        # Close the pooled connections of the (cached) engine before dropping its schema.
        get_engine(_pg_schema_url(base, schema)).dispose()
        drop_pg_schema(admin, schema)
        admin.dispose()


def drop_pg_schema(admin: sa.engine.Engine, schema: str, attempts: int = 20) -> None:
    """Drop a test schema even while a background thread of the test's app (the audit
    journal's shipper, a scheduler job) still writes into it: PostgreSQL may pick the DROP as
    a deadlock victim; it is retried (the writer then fails on the vanished tables, which is
    the end of that test's app anyway)."""
    import time

    for attempt in range(attempts):
        try:
            with admin.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            return
        except sa.exc.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """Every database test runs on SQLite and on PostgreSQL (skipped without the server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/vigie.sqlite"
    return request.getfixturevalue("pg_url")


def strip_ids(text: str) -> str:
    return re.sub(r"\d{8}T\d{6}Z-[0-9a-f]{8}", "<id>", text)


__all__ = ["ROLES", "copy_catalog", "home_sharing", "np", "strip_ids", "synthetic_runs"]
