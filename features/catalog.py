"""The catalog database: one row per cube vintage and per ingest run (SQLAlchemy Core).

SQLite under ``VIGIE_HOME`` by default; any SQLAlchemy URL (PostgreSQL in production) works
unchanged. The tables are defined in :mod:`features.storage.schema` and the engine in
:mod:`features.storage.db`, whose Alembic migrations (``features/storage/migrations``) create
and change the schema on a process's first use of a database; their names stay importable
from here.
"""

from __future__ import annotations

from features.storage.db import get_engine  # noqa: F401  (re-exported)
from features.storage.schema import as_utc, ingest_runs, utcnow, vintages  # noqa: F401
from features.storage.schema import catalog_metadata as metadata  # noqa: F401
