"""Initial schema: cube catalog, API tokens, audit log, job runs, locks, APScheduler job store.

Databases made before migrations existed (``metadata.create_all`` in ``features.catalog``)
already hold the two catalog tables: they are kept as they are and only the missing tables
are created.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _exists(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    _catalog_tables()
    _service_tables()


def _catalog_tables() -> None:
    """The catalog's two tables, kept as they are where ``create_all`` made them before."""
    if not _exists("cube_vintages"):
        op.create_table(
            "cube_vintages",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("issued_at", TZ, nullable=False),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("data_dir", sa.Text),
            sa.Column("sources", sa.JSON, nullable=False),
            sa.Column("files", sa.JSON, nullable=False),
            sa.Column("row_counts", sa.JSON, nullable=False),
            sa.Column("fitted", sa.JSON),
        )
        op.create_index("ix_cube_vintages_issued_at", "cube_vintages", ["issued_at"])
    if not _exists("ingest_runs"):
        op.create_table(
            "ingest_runs",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("started_at", TZ, nullable=False),
            sa.Column("finished_at", TZ),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("vintage_id", sa.String(64)),
            sa.Column("report", sa.JSON),
        )


def _service_tables() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_used_at", TZ),
        sa.Column("revoked_at", TZ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
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
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("params", sa.JSON),
        sa.Column("requested_by", sa.String(100)),
        sa.Column("queued_at", TZ, nullable=False),
        sa.Column("not_before", TZ, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("worker", sa.String(128)),
        sa.Column("error", sa.Text),
        sa.Column("result", sa.JSON),
        sa.Column("retry_of", sa.Integer),
    )
    op.create_index("ix_job_runs_job", "job_runs", ["job"])
    op.create_index("ix_job_runs_status", "job_runs", ["status"])
    op.create_table(
        "service_locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("acquired_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
    )
    if not _exists("apscheduler_jobs"):
        op.create_table(
            "apscheduler_jobs",
            sa.Column("id", sa.Unicode(191), primary_key=True),
            sa.Column("next_run_time", sa.Float(25)),
            sa.Column("job_state", sa.LargeBinary, nullable=False),
        )
        op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs",
                        ["next_run_time"])


def downgrade() -> None:
    for name in ("apscheduler_jobs", "service_locks", "job_runs", "audit_log", "api_tokens",
                 "ingest_runs", "cube_vintages"):
        op.drop_table(name)
