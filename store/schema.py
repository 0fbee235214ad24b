"""Table definitions (SQLAlchemy Core). Alembic migrations in ``store/migrations``
create them; ``tests/component/test_migrations.py`` checks the two agree."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from sluice.producer.events import Event

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("settings", Json, comment="per-workspace rule overrides (email_open_window_s, ...)"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True, comment="sha256 hex of the write key"),
    Column(
        "workspace_id", ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, comment="a rotated key works until then; null: no end"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("user_id", String(255)),
    Column("email", String(320)),
    Column("anonymous_id", String(255)),
    Column("traits", Json, nullable=False),
    Column("properties", Json, nullable=False),
    Column("context", Json, nullable=False),
    Column("timestamp", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
    Column("received_at", Timestamp, nullable=False),
    Column("source", String(40), nullable=False),
    Column("group_id", String(255), comment="Segment group calls: the groupId"),
    Column("previous_id", String(255), comment="Segment alias calls: the previousId"),
    Column("batch_id", String(64), nullable=False),
    Column("stored_at", Timestamp, nullable=False),
    Column(
        "is_bot", Boolean, nullable=False, server_default=false(), comment="kept in bot mode 'flag'"
    ),
    UniqueConstraint("workspace_id", "message_id"),
    # Purges, retention and exports read a workspace's events by event time (migration 0008).
    Index("ix_events_workspace_timestamp", "workspace_id", "timestamp"),
)
# What the rules read of an event and nothing stores (``Event.order_id``, ``creates_user``).
EVENT_HINTS = frozenset({"order_id", "creates_user"})
# The canonical event's fields that are columns of ``events``, in the model's order (the
# one list the worker's rows, a trigger's payload and the export are made from).
EVENT_COLUMNS = tuple(name for name in Event.model_fields if name not in EVENT_HINTS)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", String(64), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", String(40)),
    Column("detail", Text),
    Column("kind", String(20)),
    Column("name", String(200)),
    Column("raw", Text, comment="truncated copy of a discarded or rejected event"),
    Column("batch_id", String(64), nullable=False),
    Column("decided_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "message_id"),
)

repeats = Table(
    "repeats",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", String(64), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("batch_id", String(64), nullable=False),
    Column("raw", Text, comment="truncated copy of the repeated event"),
    Column("seen_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "message_id", "batch_id"),
    comment="deliveries of an already decided message id (duplicate_message)",
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(255)),
    Column("email", String(320), comment="lower-cased"),
    Column("attributes", Json, nullable=False),
    Column(
        "attribute_times",
        Json,
        nullable=False,
        comment="per attribute: [event time ms, message_id] of the write that set it",
    ),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "user_id"),
    UniqueConstraint("workspace_id", "email"),
)

order_claims = Table(
    "order_claims",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("order_id", String(255), primary_key=True),
    Column("message_id", String(100), nullable=False),
    Column("claimed_at", Timestamp, nullable=False),
)

event_definitions = Table(
    "event_definitions",
    metadata,
    Column("workspace_id", ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(36), primary_key=True, comment="Bunce's event_id"),
    Column("format", String(20), nullable=False, comment="bunce | clevertap"),
    Column("name", String(200), nullable=False),
    Column("params", Json, nullable=False, comment="bunce: {key: type}"),
    Column("required", Json, nullable=False, comment="clevertap: [property, ...]"),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "format", "name"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", String(64)),
    Column("reason", String(200), nullable=False),
    Column("detail", Text),
    Column(
        "payload",
        Text,
        nullable=False,
        comment="the raw message as JSON (before migration 0006: truncated at 1 MB)",
    ),
    Column("created_at", Timestamp, nullable=False),
    Column(
        "kind",
        String(20),
        nullable=False,
        server_default="batch",
        comment="batch | event (an event without workspace_id or message_id)",
    ),
    Column(
        "events",
        Integer,
        comment="the events it holds; null: the payload does not decode",
    ),
    Column(
        "replay_of",
        ForeignKey("dead_letters.id", ondelete="SET NULL"),
        comment="the dead letter whose replay failed again as this one",
    ),
    Column("replayed_at", Timestamp),
    Column(
        "replay_batch_id",
        String(64),
        index=True,
        comment="the batch it was published again as",
    ),
)

dead_letter_workspaces = Table(
    "dead_letter_workspaces",
    metadata,
    Column(
        "dead_letter_id",
        ForeignKey("dead_letters.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("workspace_id", String(64), primary_key=True, index=True),
    Column("events", Integer, nullable=False),
    comment="the workspaces of a dead letter's events, with how many each",
)

automations = Table(
    "automations",
    metadata,
    Column("id", String(40), primary_key=True, comment="au_…"),
    Column("workspace_id", ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("event_name", String(200), nullable=False),
    Column("filters", Json, nullable=False, comment="{property: value}; all must be equal"),
    Column("action", String(20), nullable=False, comment="webhook | task | bulletin"),
    Column("target", String(2048), comment="webhook: the URL; task: the Celery task name"),
    Column("queue", String(200), comment="task: the queue the task is sent to"),
    Column("secret", String(100), comment="webhook: the signing secret (whsec_…)"),
    Column("status", String(20), nullable=False, comment="active | disabled"),
    Column("disabled_reason", Text),
    Column("failing_since", Timestamp, comment="webhook: first failure since the last success"),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_automations_workspace_event", "workspace_id", "event_name"),
)

trigger_deliveries = Table(
    "trigger_deliveries",
    metadata,
    Column("id", String(40), primary_key=True, comment="trg_…; the webhook-id header"),
    Column("workspace_id", String(64), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("automation_id", ForeignKey("automations.id", ondelete="CASCADE"), nullable=False),
    Column("action", String(20), nullable=False),
    Column(
        "status",
        String(20),
        nullable=False,
        comment="pending | retrying | delivered | failed | cancelled",
    ),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Timestamp),
    Column("lease_until", Timestamp, comment="an attempt is under way until then"),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("delivered_at", Timestamp),
    UniqueConstraint("message_id", "automation_id"),
    Index("ix_trigger_deliveries_workspace_message", "workspace_id", "message_id"),
    Index("ix_trigger_deliveries_automation_lease", "automation_id", "lease_until"),
    # The deliverers' work list: an automation's open triggers by due time (migration 0005).
    Index(
        "ix_trigger_deliveries_due",
        "automation_id",
        "next_attempt_at",
        postgresql_where=text("status IN ('pending', 'retrying')"),
        sqlite_where=text("status IN ('pending', 'retrying')"),
    ),
    comment="exactly one trigger per (message, automation), with its delivery state",
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "trigger_id",
        ForeignKey("trigger_deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("attempt", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False, index=True),
    Column("latency_ms", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("result", String(20), nullable=False, comment="delivered | retry | failed | gone"),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", String(64), nullable=False, index=True),
    Column(
        "subject",
        String(64),
        nullable=False,
        comment="sha256 of the workspace id and the identifier, never the identifier",
    ),
    Column("identifier_kind", String(20), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("erased_at", Timestamp, nullable=False),
    Column("removed", Json, nullable=False, comment="rows removed per table, and Redis keys"),
    comment="erasures done (who, when, how many rows), without the person's identity",
)

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", String(32), primary_key=True, comment="tok_…, as the CLI and the API show it"),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True, comment="sha256 hex"),
    Column("workspaces", Json, comment="the workspace ids it may reach; null: every one"),
    Column("read_only", Boolean, nullable=False, server_default=false()),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, comment="null: no end"),
    Column("revoked_at", Timestamp),
    comment="bearer tokens of the control plane (/admin/v1), stored hashed",
)

admin_audit = Table(
    "admin_audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_id", String(32), nullable=False, comment="cli for a command run on a host"),
    Column("operation", String(100), nullable=False),
    Column("target", String(300), nullable=False),
    Column("outcome", Integer, nullable=False, comment="the HTTP status answered"),
    Column("at", Timestamp, nullable=False, index=True),
    comment="every write of the control plane: who, what, on what, when, how it ended",
)
