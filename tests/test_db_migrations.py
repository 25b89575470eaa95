"""Migrations own the schema: a fresh database is migrated on first use, the migrated schema
matches the table definitions, an old ``create_all`` database is upgraded in place, and two
processes opening a new database at once do not race."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
TABLES = {"cube_vintages", "ingest_runs", "api_tokens", "audit_log", "job_runs",
          "service_locks", "apscheduler_jobs", "alembic_version"}


def _head() -> str:
    from alembic.script import ScriptDirectory

    from service.db import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migrations branch: {heads}"
    return heads[0]


def test_first_use_migrates_to_head(db_url):
    from features.catalog import get_engine
    from service.db import current_revision

    engine = get_engine(db_url)
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    assert current_revision(engine) == _head()


def test_migrated_schema_matches_the_table_definitions(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from features.catalog import get_engine
    from service.db import all_metadata

    engine = get_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), all_metadata())
    # Type spellings differ between dialects (e.g. JSON stored as TEXT); tables, columns and
    # indexes must not.
    structural = [d for d in diff if d[0] in ("add_table", "remove_table", "add_column",
                                              "remove_column", "add_index", "remove_index")]
    assert structural == []


def test_legacy_create_all_database_is_upgraded(tmp_path):
    from features.catalog import get_engine, ingest_runs, metadata, utcnow

    url = f"sqlite:///{tmp_path}/legacy.sqlite"
    legacy = sa.create_engine(url)
    metadata.create_all(legacy)  # how databases were made before migrations
    with legacy.begin() as conn:
        conn.execute(ingest_runs.insert().values(started_at=utcnow(), outcome="ok"))
    legacy.dispose()
    engine = get_engine(url)
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ingest_runs)).scalar() == 1


def test_two_processes_migrating_at_once(tmp_path):
    url = f"sqlite:///{tmp_path}/race.sqlite"
    code = ("import sys; from features.catalog import get_engine; from service.db import "
            "current_revision; print(current_revision(get_engine(sys.argv[1])))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, url], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    assert [o[0].strip() for o in outs] == [_head(), _head()]


def test_db_cli(runner, tmp_path):
    env = {"VIGIE_HOME": str(tmp_path), "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path}/c.sqlite"}
    code, out, _ = runner(["db", "upgrade"], env)
    assert code == 0 and out.strip() == _head()


def test_fencing_columns_added_to_a_0001_database(db_url):
    """0002 upgrades a database holding a lease and runs: the lease starts at epoch 0, old runs
    have no fence."""
    from features.catalog import utcnow
    from service.db import current_revision, job_runs, locks, migrate

    engine = sa.create_engine(db_url)  # not get_engine: that one migrates to the head at once
    migrate(engine, "0001")
    with engine.begin() as conn:
        cols = {c["name"] for c in sa.inspect(conn).get_columns("service_locks")}
        assert "epoch" not in cols
        conn.execute(sa.text("INSERT INTO service_locks (name, holder, acquired_at, expires_at) "
                             "VALUES ('scheduler', 'old', :t, :t)"), {"t": utcnow()})
        conn.execute(sa.text('INSERT INTO job_runs (job, status, "trigger", attempt, '
                             "max_attempts, queued_at, not_before) VALUES "
                             "('ingest', 'ok', 'manual', 1, 1, :t, :t)"), {"t": utcnow()})
    migrate(engine)
    assert current_revision(engine) == _head()
    with engine.connect() as conn:
        assert conn.execute(sa.select(locks.c.epoch)).scalar_one() == 0
        assert conn.execute(sa.select(job_runs.c.fence)).scalar_one() is None
    engine.dispose()
