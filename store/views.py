"""What the API and the CLI show of triggers and delivery attempts (an event's outcome:
``sluice.store.outcomes``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from sluice.producer.events import as_utc
from sluice.store.engine import matches_any, older_than
from sluice.store.schema import (
    automations,
    delivery_attempts,
    trigger_deliveries,
)


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def _trigger_view(row: Any) -> dict[str, Any]:
    return {
        "trigger_id": row.id,
        "automation_id": row.automation_id,
        "on": row.event_name,
        "action": row.action,
        "target": row.target,
        "status": row.status,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "next_attempt_at": _iso(row.next_attempt_at),
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
    }


def triggers_of(engine: Engine, workspace_id: str, message_id: str) -> list[dict[str, Any]]:
    """The triggers an event fired, with their state (for ``GET /v1/events/{id}``)."""
    query = (
        select(trigger_deliveries, automations.c.event_name, automations.c.target)
        .join(automations, automations.c.id == trigger_deliveries.c.automation_id)
        .where(
            trigger_deliveries.c.workspace_id == workspace_id,
            trigger_deliveries.c.message_id == message_id,
        )
        .order_by(trigger_deliveries.c.created_at, trigger_deliveries.c.id)
    )
    with engine.connect() as conn:
        return [_trigger_view(row) for row in conn.execute(query)]


def triggers_by_message(
    conn: Connection, workspace_id: str, message_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The triggers of many events at once, shaped as ``triggers_of`` (for exports)."""
    query = (
        select(trigger_deliveries, automations.c.event_name, automations.c.target)
        .join(automations, automations.c.id == trigger_deliveries.c.automation_id)
        .where(
            trigger_deliveries.c.workspace_id == workspace_id,
            matches_any(conn.dialect, trigger_deliveries.c.message_id, message_ids),
        )
        .order_by(trigger_deliveries.c.created_at, trigger_deliveries.c.id)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(query):
        found.setdefault(row.message_id, []).append(_trigger_view(row))
    return found


def recent_attempts(
    engine: Engine, workspace_id: str | None, automation_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The newest delivery attempts (for ``sluice deliveries``)."""
    query = (
        select(
            delivery_attempts,
            trigger_deliveries.c.workspace_id,
            trigger_deliveries.c.message_id,
            trigger_deliveries.c.automation_id,
            trigger_deliveries.c.status.label("trigger_status"),
        )
        .join(trigger_deliveries, trigger_deliveries.c.id == delivery_attempts.c.trigger_id)
        .order_by(delivery_attempts.c.started_at.desc(), delivery_attempts.c.id.desc())
        .limit(limit)
    )
    if workspace_id is not None:
        query = query.where(trigger_deliveries.c.workspace_id == workspace_id)
    if automation_id is not None:
        query = query.where(trigger_deliveries.c.automation_id == automation_id)
    with engine.connect() as conn:
        return [
            {
                "started_at": as_utc(row.started_at).isoformat(),
                "trigger_id": row.trigger_id,
                "workspace_id": row.workspace_id,
                "automation_id": row.automation_id,
                "message_id": row.message_id,
                "attempt": row.attempt,
                "result": row.result,
                "status_code": row.status_code,
                "latency_ms": row.latency_ms,
                "error": row.error,
                "trigger_status": row.trigger_status,
            }
            for row in conn.execute(query)
        ]


def _attempt_view(row: Any) -> dict[str, Any]:
    return {
        "attempt": row.attempt,
        "started_at": as_utc(row.started_at).isoformat(),
        "result": row.result,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "error": row.error,
    }


def with_attempts(conn: Connection, triggers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The triggers, each with its delivery attempts (oldest first), one query."""
    if not triggers:
        return triggers
    query = (
        select(delivery_attempts)
        .where(
            matches_any(
                conn.dialect, delivery_attempts.c.trigger_id, [t["trigger_id"] for t in triggers]
            )
        )
        .order_by(delivery_attempts.c.trigger_id, delivery_attempts.c.attempt)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(query):
        found.setdefault(row.trigger_id, []).append(_attempt_view(row))
    return [{**t, "attempt_log": found.get(t["trigger_id"], [])} for t in triggers]


def triggers_with_attempts(
    engine: Engine, workspace_id: str, message_id: str
) -> list[dict[str, Any]]:
    """``triggers_of`` with each trigger's attempts."""
    fired = triggers_of(engine, workspace_id, message_id)
    with engine.connect() as conn:
        return with_attempts(conn, fired)


def deliveries_of(
    engine: Engine,
    workspace_id: str,
    automation_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    after: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """An automation's triggers (of one ``status``), newest first, with their attempts;
    ``after`` (created_at ISO text, trigger id) is where the previous page ended."""
    table = trigger_deliveries
    query = (
        select(table, automations.c.event_name, automations.c.target)
        .join(automations, automations.c.id == table.c.automation_id)
        .where(table.c.workspace_id == workspace_id, table.c.automation_id == automation_id)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(table.c.status == status)
    if after is not None:
        query = query.where(older_than(table, after))
    with engine.connect() as conn:
        triggers = [_trigger_view(row) for row in conn.execute(query)]
        return with_attempts(conn, triggers)
