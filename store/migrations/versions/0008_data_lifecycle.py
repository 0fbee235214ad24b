"""data lifecycle: key expiry, the erasure record, events by time

- ``api_keys.expires_at``: a rotated write key keeps working until then (null: no end).
- ``erasures``: that an erasure happened, who asked, when and how many rows went, without
  the person's identity in clear (a salted hash of it).
- ``ix_events_workspace_timestamp``: a workspace's events by event time, for purges,
  retention and exports. On a large PostgreSQL table create it first with
  ``CREATE INDEX CONCURRENTLY ix_events_workspace_timestamp ON events (workspace_id,
  "timestamp")``; this migration then finds it and skips it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 07:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

EVENTS_BY_TIME = "ix_events_workspace_timestamp"


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "expires_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="a rotated key works until then; null: no end",
            )
        )
    op.create_table(
        "erasures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column(
            "subject",
            sa.String(length=64),
            nullable=False,
            comment="sha256 of the workspace id and the identifier, never the identifier",
        ),
        sa.Column("identifier_kind", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "removed",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="rows removed per table, and Redis keys",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
        comment="erasures done (who, when, how many rows), without the person's identity",
    )
    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasures_workspace_id"), ["workspace_id"])
    existing = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("events")}
    if EVENTS_BY_TIME not in existing:
        op.create_index(EVENTS_BY_TIME, "events", ["workspace_id", "timestamp"])


def downgrade() -> None:
    op.drop_index(EVENTS_BY_TIME, table_name="events")
    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasures_workspace_id"))
    op.drop_table("erasures")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
