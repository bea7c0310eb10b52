"""state machines' description and tags; schedules that start executions

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "state_machines",
        sa.Column("description", sa.String(length=256), nullable=False, server_default=""),
    )
    op.add_column(
        "state_machines", sa.Column("tags", sa.Text(), nullable=False, server_default="{}")
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("state_machine", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("expression", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("catchup", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "last_execution_arn", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index(
        "ix_schedules_state_next_fire_at", "schedules", ["state", "next_fire_at"], unique=False
    )
    op.create_index(op.f("ix_schedules_state_machine"), "schedules", ["state_machine"])


def downgrade() -> None:
    op.drop_index(op.f("ix_schedules_state_machine"), table_name="schedules")
    op.drop_index("ix_schedules_state_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
    with op.batch_alter_table("state_machines") as batch:
        batch.drop_column("tags")
        batch.drop_column("description")
