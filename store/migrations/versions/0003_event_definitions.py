"""event definitions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 17:30:42.071555
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_definitions",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False, comment="Bunce's event_id"),
        sa.Column("format", sa.String(length=20), nullable=False, comment="bunce | clevertap"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="bunce: {key: type}",
        ),
        sa.Column(
            "required",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="clevertap: [property, ...]",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_definitions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_event_definitions")),
        sa.UniqueConstraint(
            "workspace_id",
            "format",
            "name",
            name=op.f("uq_event_definitions_workspace_id_format_name"),
        ),
    )


def downgrade() -> None:
    op.drop_table("event_definitions")
