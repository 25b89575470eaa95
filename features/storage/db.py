"""The database: one engine per URL, brought to the current schema by the Alembic migrations.

SQLite under ``VIGIE_HOME`` by default; any SQLAlchemy URL (PostgreSQL in production) works
unchanged. The tables are those of :mod:`features.storage.schema`; their creation and every
later change go through the Alembic scripts in ``features/storage/migrations``.
:func:`migrate` runs ``alembic upgrade head`` programmatically, under a lock, so that the first
process to open a database (CLI, server, test) brings it to the current schema and concurrent
processes wait instead of racing to create the same tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from features.storage.schema import all_metadata

__all__ = ["MIGRATIONS_DIR", "alembic_config", "all_metadata", "current_revision", "get_engine",
           "migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@functools.lru_cache(maxsize=8)
def get_engine(url: str) -> sa.Engine:
    """One engine per URL for the process; migrates the database to the current schema."""
    kwargs: dict = {"future": True}
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - driver callback
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    migrate(engine)
    return engine


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
