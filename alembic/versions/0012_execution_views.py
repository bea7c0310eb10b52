"""executions.redrive_count, indexes for the viewer's lists, trigram indexes for search

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

The trigram indexes (Postgres with pg_trgm only) serve ``GET /executions?q=``, a
case-insensitive substring search in inputs and outputs. pg_trgm ships with Postgres and is a
trusted extension from Postgres 13 on (a database owner may create it); where it cannot be
created the migration goes on without it and the search scans instead. The indexes are not in
the models (alembic/env.py leaves ``*_trgm`` indexes out of the comparison).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRGM_INDEXES = (
    ("ix_executions_input_trgm", "executions", "input_ref"),
    ("ix_executions_output_trgm", "executions", "output_ref"),
    ("ix_payloads_body_trgm", "payloads", "body"),
)


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(
            sa.Column("redrive_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.create_index("ix_executions_started", ["started_at", "id"], unique=False)
        batch.create_index(
            "ix_executions_machine_started",
            ["state_machine_id", "started_at", "id"],
            unique=False,
        )
    op.execute(
        "UPDATE executions SET redrive_count = (SELECT count(*) FROM events"
        " WHERE events.execution_id = executions.id AND events.type = 'ExecutionRedriven')"
        " WHERE EXISTS (SELECT 1 FROM events WHERE events.execution_id = executions.id"
        " AND events.type = 'ExecutionRedriven')"
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    # A failure to create the extension (not installed, no privilege) is caught inside the
    # block, so the migration's transaction goes on.
    op.execute(
        """
        DO $$ BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'pg_trgm is not available (%); execution search will scan', SQLERRM;
        END $$
        """
    )
    for name, table, column in _TRGM_INDEXES:
        op.execute(
            f"""
            DO $$ BEGIN
                IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                    CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({column} gin_trgm_ops);
                END IF;
            END $$
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _, _ in _TRGM_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_machine_started")
        batch.drop_index("ix_executions_started")
        batch.drop_column("redrive_count")
