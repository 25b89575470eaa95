"""Audit rows get the id of the request they record (unique), so that the audit journal
(:mod:`service.audit_journal`) can ship a row twice (a crash between the database's commit and
the journal's shipped offset, a replay at start) without the row appearing twice.

Rows written without a journal (forecast publications, rows of older versions) leave it null;
both SQLite and PostgreSQL allow many nulls under a unique index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("request_id", sa.String(32)))
    op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_audit_log_request_id", table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("request_id")
