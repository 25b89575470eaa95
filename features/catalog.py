"""The catalog database: one row per cube vintage and per ingest run (SQLAlchemy Core).

SQLite under ``VIGIE_HOME`` by default; any SQLAlchemy URL (PostgreSQL in production) works
unchanged. The schema is created and changed by the Alembic migrations in
``service/migrations``, run on a process's first use of a database (see ``service.db.migrate``).
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import sqlalchemy as sa

metadata = sa.MetaData()

vintages = sa.Table(
    "cube_vintages", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("data_dir", sa.Text),
    sa.Column("sources", sa.JSON, nullable=False),       # name → summary (rows, dates, warnings)
    sa.Column("files", sa.JSON, nullable=False),         # name → sha256, size, rows
    sa.Column("row_counts", sa.JSON, nullable=False),    # frequency → {indicator: non-NaN cells}
    sa.Column("fitted", sa.JSON),                        # parameters fitted while building
)

ingest_runs = sa.Table(
    "ingest_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(16), nullable=False),  # ok, partial, unchanged, failed
    sa.Column("vintage_id", sa.String(64)),
    sa.Column("report", sa.JSON),
)


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
    # Imported here: the migrations live with the service, which itself imports this module.
    from service.db import migrate

    migrate(engine)
    return engine


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
