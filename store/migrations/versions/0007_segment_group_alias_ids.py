"""segment group and alias ids: ``events`` keeps a group call's groupId and an alias call's
previousId

Two nullable columns, null for every other event and for the group and alias events stored
before this migration. Adding a nullable column without a default rewrites nothing, on
PostgreSQL as on SQLite, so this is quick on a large table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "group_id",
                sa.String(length=255),
                nullable=True,
                comment="Segment group calls: the groupId",
            )
        )
        batch_op.add_column(
            sa.Column(
                "previous_id",
                sa.String(length=255),
                nullable=True,
                comment="Segment alias calls: the previousId",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("previous_id")
        batch_op.drop_column("group_id")
