"""due triggers index: the deliverers' claim finds an automation's open triggers by due time

It replaces the index on (status, next_attempt_at), which every state change of a trigger
had to update. The new one covers open triggers only, so it stays small. Building it blocks
writes to ``trigger_deliveries`` while it scans the table; on a large table, build it
beforehand, and this migration then skips it:

    CREATE INDEX CONCURRENTLY ix_trigger_deliveries_due ON trigger_deliveries
        (automation_id, next_attempt_at) WHERE status IN ('pending', 'retrying');

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OPEN = sa.text("status IN ('pending', 'retrying')")


def upgrade() -> None:
    # A trigger leased by a deliverer of the previous version is due when its lease ends.
    op.execute(
        "UPDATE trigger_deliveries SET next_attempt_at = lease_until "
        "WHERE status IN ('pending', 'retrying') AND lease_until > next_attempt_at"
    )
    op.drop_index("ix_trigger_deliveries_status_next_attempt", table_name="trigger_deliveries")
    op.create_index(
        "ix_trigger_deliveries_due",
        "trigger_deliveries",
        ["automation_id", "next_attempt_at"],
        if_not_exists=True,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_trigger_deliveries_due", table_name="trigger_deliveries")
    op.create_index(
        "ix_trigger_deliveries_status_next_attempt",
        "trigger_deliveries",
        ["status", "next_attempt_at"],
    )
