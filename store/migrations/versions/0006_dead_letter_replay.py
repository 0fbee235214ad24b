"""dead letter replay: what a dead letter holds, for whom, and whether it was replayed

``dead_letters`` gains its kind (a whole batch, or one event without an identity), the
number of its events, the replay it came from (a batch that failed again), and when and as
which batch it was replayed. ``dead_letter_workspaces`` lists the workspaces of a dead
letter's events, so they can be listed and counted per workspace. Payloads are kept whole
from now on; older ones may be truncated (``sluice dlq replay`` refuses those).

Dead letters from before this migration get their events and workspaces from the outcomes
that rejected their events (``not processed: …; the batch is in dead_letters``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNKEYED_REASON = "invalid event without workspace_id or message_id"
PROVISIONAL = (
    "o.batch_id = dead_letters.batch_id AND o.status = 'rejected' "
    "AND o.detail LIKE 'not processed: %the batch is in dead_letters'"
)


def upgrade() -> None:
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sa.String(length=20),
                server_default="batch",
                nullable=False,
                comment="batch | event (an event without workspace_id or message_id)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "events",
                sa.Integer(),
                nullable=True,
                comment="the events it holds; null: the payload does not decode",
            )
        )
        batch_op.add_column(
            sa.Column(
                "replay_of",
                BigId,
                nullable=True,
                comment="the dead letter whose replay failed again as this one",
            )
        )
        batch_op.add_column(sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "replay_batch_id",
                sa.String(length=64),
                nullable=True,
                comment="the batch it was published again as",
            )
        )
        batch_op.alter_column(
            "payload",
            existing_type=sa.Text(),
            existing_nullable=False,
            comment="the raw message as JSON (before migration 0006: truncated at 1 MB)",
            existing_comment="the raw message, truncated",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_dead_letters_replay_of_dead_letters"),
            "dead_letters",
            ["replay_of"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            batch_op.f("ix_dead_letters_replay_batch_id"), ["replay_batch_id"], unique=False
        )
    op.create_table(
        "dead_letter_workspaces",
        sa.Column("dead_letter_id", BigId, nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dead_letter_id"],
            ["dead_letters.id"],
            name=op.f("fk_dead_letter_workspaces_dead_letter_id_dead_letters"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "dead_letter_id", "workspace_id", name=op.f("pk_dead_letter_workspaces")
        ),
        comment="the workspaces of a dead letter's events, with how many each",
    )
    with op.batch_alter_table("dead_letter_workspaces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letter_workspaces_workspace_id"), ["workspace_id"], unique=False
        )
    _backfill()


def _backfill() -> None:
    op.execute(
        sa.text(
            "UPDATE dead_letters SET kind = 'event', events = 1 WHERE reason = :reason"
        ).bindparams(reason=UNKEYED_REASON)
    )
    op.execute(
        f"UPDATE dead_letters SET events = (SELECT count(*) FROM outcomes o WHERE {PROVISIONAL}) "
        f"WHERE kind = 'batch' AND EXISTS (SELECT 1 FROM outcomes o WHERE {PROVISIONAL})"
    )
    op.execute(
        "INSERT INTO dead_letter_workspaces (dead_letter_id, workspace_id, events) "
        "SELECT dead_letters.id, o.workspace_id, count(*) FROM dead_letters "
        f"JOIN outcomes o ON {PROVISIONAL} "
        "WHERE dead_letters.kind = 'batch' GROUP BY dead_letters.id, o.workspace_id"
    )


def downgrade() -> None:
    with op.batch_alter_table("dead_letter_workspaces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letter_workspaces_workspace_id"))

    op.drop_table("dead_letter_workspaces")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_replay_batch_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_dead_letters_replay_of_dead_letters"), type_="foreignkey"
        )
        batch_op.alter_column(
            "payload",
            existing_type=sa.Text(),
            existing_nullable=False,
            comment="the raw message, truncated",
            existing_comment="the raw message as JSON (before migration 0006: truncated at 1 MB)",
        )
        batch_op.drop_column("replay_batch_id")
        batch_op.drop_column("replayed_at")
        batch_op.drop_column("replay_of")
        batch_op.drop_column("events")
        batch_op.drop_column("kind")
