"""state_machine_aliases: names that route executions to versions by weight

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "state_machine_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_machine_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("routing", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["state_machine_id"], ["state_machines.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("state_machine_id", "name"),
    )
    op.create_index(
        op.f("ix_state_machine_aliases_state_machine_id"),
        "state_machine_aliases",
        ["state_machine_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_state_machine_aliases_state_machine_id"), table_name="state_machine_aliases"
    )
    op.drop_table("state_machine_aliases")
