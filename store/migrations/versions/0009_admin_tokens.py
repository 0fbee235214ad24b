"""the control plane: admin tokens and the audit log of its writes

- ``admin_tokens``: bearer tokens for ``/admin/v1``, stored as a sha256 of the token,
  cluster-wide (``workspaces`` null) or scoped to workspaces, read-only or not, with an
  optional expiry and a revocation time.
- ``admin_audit``: one row per write through the control plane.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column(
            "id",
            sa.String(length=32),
            nullable=False,
            comment="tok_…, as the CLI and the API show it",
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, comment="sha256 hex"),
        sa.Column(
            "workspaces",
            JSON,
            nullable=True,
            comment="the workspace ids it may reach; null: every one",
        ),
        sa.Column("read_only", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True, comment="null: no end"),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_tokens_token_hash")),
        comment="bearer tokens of the control plane (/admin/v1), stored hashed",
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column(
            "token_id",
            sa.String(length=32),
            nullable=False,
            comment="cli for a command run on a host",
        ),
        sa.Column("operation", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False, comment="the HTTP status answered"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_audit")),
        comment="every write of the control plane: who, what, on what, when, how it ended",
    )
    with op.batch_alter_table("admin_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_audit_at"), ["at"])


def downgrade() -> None:
    with op.batch_alter_table("admin_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_audit_at"))
    op.drop_table("admin_audit")
    op.drop_table("admin_tokens")
