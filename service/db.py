"""The service's database tables and the migrations that create every table (catalog included).

Tables are described with SQLAlchemy Core, like the catalog in :mod:`features.catalog`; their
creation and every later change go through the Alembic scripts in ``service/migrations``.
:func:`migrate` runs ``alembic upgrade head`` programmatically, under a lock, so that the first
process to open a database (CLI, server, test) brings it to the current schema and concurrent
processes wait instead of racing to create the same tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

metadata = sa.MetaData()

#: API tokens; only a SHA-256 of the secret is kept (the secret is 256 random bits, so a slow
#: password hash would add latency to every request without adding protection).
api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

#: Who asked what, when, and which data vintage and model version the answer came from.
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("event", sa.String(32), nullable=False),      # request, forecast_published, …
    sa.Column("actor", sa.String(100), nullable=False),     # token name, or a job name
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("method", sa.String(8)),
    sa.Column("path", sa.Text),
    sa.Column("query", sa.Text),
    sa.Column("status", sa.Integer),
    sa.Column("vintage_id", sa.String(64)),
    sa.Column("model_version", sa.String(120)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("remote_addr", sa.String(64)),
    sa.Column("details", sa.JSON),
)

#: Job history and queue: a row is queued, then running, then ok / failed / interrupted.
#: ``worker`` and ``fence`` name who runs it: the scheduler lease's holder and the lease's epoch
#: when the run was claimed (``fence`` is null for runs claimed without the lease, e.g. by
#: ``jobs run``). Finishing or publishing is a compare-and-set on both (see ``service.jobs``).
job_runs = sa.Table(
    "job_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule, manual, api, retry, chain
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=1),
    sa.Column("params", sa.JSON),
    sa.Column("requested_by", sa.String(100)),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("worker", sa.String(128)),
    sa.Column("error", sa.Text),
    sa.Column("result", sa.JSON),
    sa.Column("retry_of", sa.Integer),
    sa.Column("fence", sa.Integer),
)

#: Leases: the holder of ``scheduler`` runs the scheduler; others wait for it to expire.
#: ``epoch`` grows by one at every change of holder and never goes back (a released lease is
#: expired, not deleted): it is the fencing token of the runs claimed under the lease.
locks = sa.Table(
    "service_locks", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
)

#: APScheduler's persistent job store, declared here so that migrations own the schema
#: (same definition as ``apscheduler.jobstores.sqlalchemy``; it then finds the table present).
apscheduler_jobs = sa.Table(
    "apscheduler_jobs", metadata,
    sa.Column("id", sa.Unicode(191), primary_key=True),
    sa.Column("next_run_time", sa.Float(25), index=True),
    sa.Column("job_state", sa.LargeBinary, nullable=False),
)


def all_metadata() -> list[sa.MetaData]:
    """Every table set the migrations must cover: the catalog's and the service's."""
    from features.catalog import metadata as catalog_metadata

    return [catalog_metadata, metadata]


def alembic_config(connection: sa.Connection | None = None):
    """An Alembic ``Config`` built in code (no ``alembic.ini`` to find or keep in sync)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that only one process holds at a time.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: an ``flock`` on a file beside the
    database (SQLite's own locking would make the second process fail rather than wait).
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7461626)"))
            yield conn
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with engine.begin() as conn:
            yield conn
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with engine.begin() as conn:
            yield conn
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest schema).

    Cheap when already there (one query of ``alembic_version``), so every process calls it on
    its first use of a database.
    """
    from alembic import command

    with _migration_lock(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at (None before any migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def newest_page(engine: sa.Engine, table: sa.Table, filters: dict[sa.Column, Any],
                limit: int, offset: int) -> tuple[list[sa.Row], int]:
    """Rows of ``table`` newest first (by ``id``), one page, and how many match in all.

    ``filters`` maps a column to the value it must equal; empty values (None, "") filter
    nothing.
    """
    where = [column == value for column, value in filters.items() if value]
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)
                             ).scalar_one()
        rows = conn.execute(sa.select(table).where(*where).order_by(table.c.id.desc())
                            .limit(limit).offset(offset)).all()
    return rows, int(total)


def get_engine(url: str) -> sa.Engine:
    """The migrated engine of a URL (shared with the catalog: one pool per process)."""
    from features.catalog import get_engine as _get_engine

    return _get_engine(url)
