"""The service's database tables and helpers (the tables and the engine live in the storage
foundation, :mod:`features.storage`; their names stay importable from here).

Tables are described with SQLAlchemy Core in :mod:`features.storage.schema`; their creation and
every later change go through the Alembic scripts in ``features/storage/migrations``, run by
:func:`migrate` (:mod:`features.storage.db`) on a process's first use of a database.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from features.storage.db import (  # noqa: F401  (re-exported)
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    get_engine,
    migrate,
)
from features.storage.schema import (  # noqa: F401  (re-exported)
    all_metadata,
    api_token_generation,
    api_tokens,
    apscheduler_jobs,
    audit_log,
    job_runs,
    locks,
)
from features.storage.schema import service_metadata as metadata  # noqa: F401


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
