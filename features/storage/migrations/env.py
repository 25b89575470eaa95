"""Alembic environment: runs against the connection handed over by
``features.storage.db.migrate``.

Run by hand with ``python -m service db upgrade`` (or ``alembic`` with ``-x url=...``); the URL
otherwise comes from ``VIGIE_DATABASE_URL`` / the default SQLite file.
"""

from __future__ import annotations

from alembic import context

from features.storage.schema import all_metadata

config = context.config
target_metadata = all_metadata()


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:  # pragma: no cover - command-line use
    import sqlalchemy as sa

    from features.settings import Settings

    url = context.get_x_argument(as_dictionary=True).get("url") or Settings.from_env().database_url
    with sa.create_engine(url).begin() as conn:
        run_migrations(conn)
