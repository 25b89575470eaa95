"""Job fencing: the scheduler lease gets an epoch (incremented at each change of holder) and a
job run records the epoch it was claimed under, so that a leader that lost its lease can neither
finish nor publish a run the new leader took over.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service_locks") as batch:
        batch.add_column(sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("fence", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("fence")
    with op.batch_alter_table("service_locks") as batch:
        batch.drop_column("epoch")
