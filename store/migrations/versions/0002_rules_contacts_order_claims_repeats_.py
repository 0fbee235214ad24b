"""rules: contacts, order claims, repeats, workspace settings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 16:52:25.237002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_claims",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "order_id", name=op.f("pk_order_claims")),
    )
    op.create_table(
        "repeats",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=True, comment="truncated copy of the repeated event"),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repeats")),
        sa.UniqueConstraint(
            "workspace_id",
            "message_id",
            "batch_id",
            name=op.f("uq_repeats_workspace_id_message_id_batch_id"),
        ),
        comment="deliveries of an already decided message id (duplicate_message)",
    )
    op.create_table(
        "contacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True, comment="lower-cased"),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "attribute_times",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="per attribute: [event time ms, message_id] of the write that set it",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contacts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("workspace_id", "email", name=op.f("uq_contacts_workspace_id_email")),
        sa.UniqueConstraint(
            "workspace_id", "user_id", name=op.f("uq_contacts_workspace_id_user_id")
        ),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "is_bot",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
                comment="kept in bot mode 'flag'",
            )
        )

    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "settings",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
                comment="per-workspace rule overrides (email_open_window_s, ...)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("settings")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("is_bot")

    op.drop_table("contacts")
    op.drop_table("repeats")
    op.drop_table("order_claims")
