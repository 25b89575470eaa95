"""Tokens get a territorial scope and the revocations a generation counter.

* ``api_tokens.territories``: the JSON list of the commune and EPCI codes a ``city`` token reads
  unsuppressed and may write (null: an unscoped token, every role but ``city``);
* ``api_token_generation``: one row whose ``generation`` a trigger on ``api_tokens`` grows by
  one whenever a token's ``revoked_at``, ``role``, ``territories`` or hash is updated or a token
  is deleted, in that statement's own transaction (however it is done: ``token revoke``, another
  server, plain SQL). A serve process keeps the tokens it verified in memory and drops them all
  when it sees the generation change (it reads it at most once a second by default), so a
  revocation reaches every process within that delay (service.auth).

A later migration that rebuilds ``api_tokens`` on SQLite (Alembic's batch "move and copy")
drops the trigger with the old table: it must create it again (:func:`create_trigger`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("territories", sa.JSON))
    generation = op.create_table(
        "api_token_generation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    )
    op.bulk_insert(generation, [{"id": 1, "generation": 0}])
    create_trigger()


_COLUMNS = "revoked_at, role, territories, token_hash"
_BUMP = "UPDATE api_token_generation SET generation = generation + 1 WHERE id = 1;"


def create_trigger() -> None:
    """The trigger that moves the revocation generation (SQLite or PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION vigie_token_generation() RETURNS trigger AS $$ "
                   f"BEGIN {_BUMP} RETURN NULL; END $$ LANGUAGE plpgsql")
        op.execute(f"CREATE TRIGGER api_tokens_generation AFTER UPDATE OF {_COLUMNS} OR DELETE "
                   "ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION vigie_token_generation()")
        return
    op.execute(f"CREATE TRIGGER api_tokens_generation_update AFTER UPDATE OF {_COLUMNS} "
               f"ON api_tokens BEGIN {_BUMP} END")
    op.execute(f"CREATE TRIGGER api_tokens_generation_delete AFTER DELETE ON api_tokens "
               f"BEGIN {_BUMP} END")


def drop_trigger() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS api_tokens_generation ON api_tokens")
        op.execute("DROP FUNCTION IF EXISTS vigie_token_generation()")
        return
    op.execute("DROP TRIGGER IF EXISTS api_tokens_generation_update")
    op.execute("DROP TRIGGER IF EXISTS api_tokens_generation_delete")


def downgrade() -> None:
    drop_trigger()
    op.drop_table("api_token_generation")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("territories")
