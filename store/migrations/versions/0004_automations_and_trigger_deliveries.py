"""automations and trigger deliveries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 18:41:46.543502
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automations",
        sa.Column("id", sa.String(length=40), nullable=False, comment="au_…"),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("event_name", sa.String(length=200), nullable=False),
        sa.Column(
            "filters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="{property: value}; all must be equal",
        ),
        sa.Column(
            "action", sa.String(length=20), nullable=False, comment="webhook | task | bulletin"
        ),
        sa.Column(
            "target",
            sa.String(length=2048),
            nullable=True,
            comment="webhook: the URL; task: the Celery task name",
        ),
        sa.Column(
            "queue",
            sa.String(length=200),
            nullable=True,
            comment="task: the queue the task is sent to",
        ),
        sa.Column(
            "secret",
            sa.String(length=100),
            nullable=True,
            comment="webhook: the signing secret (whsec_…)",
        ),
        sa.Column("status", sa.String(length=20), nullable=False, comment="active | disabled"),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column(
            "failing_since",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="webhook: first failure since the last success",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_automations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automations")),
    )
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_automations_workspace_event", ["workspace_id", "event_name"], unique=False
        )

    op.create_table(
        "trigger_deliveries",
        sa.Column(
            "id", sa.String(length=40), nullable=False, comment="trg_…; the webhook-id header"
        ),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("automation_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column(
            "status",
            sa.String(length=20),
            nullable=False,
            comment="pending | retrying | delivered | failed | cancelled",
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "lease_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="an attempt is under way until then",
        ),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name=op.f("fk_trigger_deliveries_automation_id_automations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trigger_deliveries")),
        sa.UniqueConstraint(
            "message_id",
            "automation_id",
            name=op.f("uq_trigger_deliveries_message_id_automation_id"),
        ),
        comment="exactly one trigger per (message, automation), with its delivery state",
    )
    with op.batch_alter_table("trigger_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_trigger_deliveries_status_next_attempt",
            ["status", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_trigger_deliveries_automation_lease", ["automation_id", "lease_until"], unique=False
        )
        batch_op.create_index(
            "ix_trigger_deliveries_workspace_message", ["workspace_id", "message_id"], unique=False
        )

    op.create_table(
        "delivery_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("trigger_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "result",
            sa.String(length=20),
            nullable=False,
            comment="delivered | retry | failed | gone",
        ),
        sa.ForeignKeyConstraint(
            ["trigger_id"],
            ["trigger_deliveries.id"],
            name=op.f("fk_delivery_attempts_trigger_id_trigger_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_started_at"), ["started_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_trigger_id"), ["trigger_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_trigger_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_started_at"))

    op.drop_table("delivery_attempts")
    with op.batch_alter_table("trigger_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_trigger_deliveries_workspace_message")
        batch_op.drop_index("ix_trigger_deliveries_automation_lease")
        batch_op.drop_index("ix_trigger_deliveries_status_next_attempt")

    op.drop_table("trigger_deliveries")
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.drop_index("ix_automations_workspace_event")

    op.drop_table("automations")
