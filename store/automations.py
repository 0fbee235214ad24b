"""Automations (docs/architecture.md §6; ``sluice automation`` in the README): on an event
name, with optional equality filters on properties, fire a webhook, a Celery task or a
bulletin (``sluice.actions``).

A filter value is text (``--where plan=pro``); a property matches when it is that string,
or when its JSON form is that text (``--where amount=10`` matches ``10``, ``--where vip=true``
matches ``true``)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, update

from sluice.actions import ACTIONS, Action, Target
from sluice.actions.webhook import new_secret
from sluice.producer.events import Event, as_utc, utc_now
from sluice.store.engine import matches_any, older_than, writing
from sluice.store.schema import automations, trigger_deliveries, workspaces


class AutomationStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class TriggerStatus(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN = (str(TriggerStatus.PENDING), str(TriggerStatus.RETRYING))
Pending = tuple[str, str]  # (trigger id, automation id): a trigger waiting for a deliverer


@dataclass(frozen=True, slots=True)
class Automation:
    id: str
    workspace_id: str
    event_name: str
    action: Action
    filters: dict[str, str] = field(default_factory=dict)
    target: str | None = None  # webhook URL or task name
    queue: str | None = None
    secret: str | None = None
    status: AutomationStatus = AutomationStatus.ACTIVE
    disabled_reason: str | None = None

    @property
    def destination(self) -> Target:
        """Where its triggers go, as its action type checked it when it was added."""
        return Target(self.target, self.queue, self.secret)

    def matches(self, event: Event) -> bool:
        return event.name == self.event_name and all(
            key in event.properties and _as_text(event.properties[key]) == value
            for key, value in self.filters.items()
        )


def too_old_to_fire(event: Event, now: datetime, max_age_s: int) -> bool:
    """Late events are stored but fire no automation (docs/architecture.md §6,
    ``SLUICE_TRIGGER_MAX_AGE_S``)."""
    return as_utc(event.timestamp) < now - timedelta(seconds=max_age_s)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def automation_of(row: Any) -> Automation:
    return Automation(
        id=row.id,
        workspace_id=row.workspace_id,
        event_name=row.event_name,
        action=Action(row.action),
        filters=dict(row.filters or {}),
        target=row.target,
        queue=row.queue,
        secret=row.secret,
        status=AutomationStatus(row.status),
        disabled_reason=row.disabled_reason,
    )


def add_automation(
    engine: Engine,
    workspace_id: str,
    event_name: str,
    action: Action,
    *,
    target: str | None = None,
    queue: str | None = None,
    filters: Mapping[str, str] | None = None,
    allow_private_webhooks: bool = False,
) -> Automation:
    """Store an active automation. Raises ``ValueError`` (with the reason) for a bad
    definition, including a webhook URL Sluice would not call, and ``LookupError`` for an
    unknown workspace."""
    if not 1 <= len(event_name) <= 200:
        raise ValueError("--on needs an event name of 1 to 200 characters")
    checked = ACTIONS[action].checked(target, queue, allow_private=allow_private_webhooks)
    now = utc_now()
    automation = Automation(
        id=f"au_{uuid.uuid4().hex}",
        workspace_id=workspace_id,
        event_name=event_name,
        action=action,
        filters=dict(filters or {}),
        target=checked.target,
        queue=checked.queue,
        secret=checked.secret,
    )
    with writing(engine) as conn:
        if (
            conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).first()
            is None
        ):
            raise LookupError(f"unknown workspace {workspace_id!r}")
        conn.execute(
            automations.insert().values(
                id=automation.id,
                workspace_id=workspace_id,
                event_name=event_name,
                filters=automation.filters,
                action=str(action),
                target=automation.target,
                queue=automation.queue,
                secret=automation.secret,
                status=str(AutomationStatus.ACTIVE),
                created_at=now,
                updated_at=now,
            )
        )
    return automation


def disable_automation(conn: Connection, automation_id: str, reason: str, now: datetime) -> bool:
    """Disable an automation: it fires no new triggers, and its deliveries that are waiting
    (not under way) are cancelled. One under way records its own result."""
    result = conn.execute(
        update(automations)
        .where(
            automations.c.id == automation_id,
            automations.c.status == str(AutomationStatus.ACTIVE),
        )
        .values(status=str(AutomationStatus.DISABLED), disabled_reason=reason, updated_at=now)
    )
    if result.rowcount == 0:
        return False
    conn.execute(
        update(trigger_deliveries)
        .where(
            trigger_deliveries.c.automation_id == automation_id,
            trigger_deliveries.c.status.in_(OPEN),
            or_(trigger_deliveries.c.lease_until.is_(None), trigger_deliveries.c.lease_until < now),
        )
        .values(
            status=str(TriggerStatus.CANCELLED),
            next_attempt_at=None,
            last_error=f"automation disabled: {reason}",
            updated_at=now,
        )
    )
    return True


def active_automations(
    conn: Connection, workspace_ids: Collection[str], event_names: Collection[str] | None = None
) -> list[Automation]:
    """The active automations of these workspaces (on these event names), one query."""
    if not workspace_ids:
        return []
    query = select(automations).where(
        matches_any(conn.dialect, automations.c.workspace_id, workspace_ids),
        automations.c.status == str(AutomationStatus.ACTIVE),
    )
    if event_names is not None:
        query = query.where(matches_any(conn.dialect, automations.c.event_name, event_names))
    return [automation_of(row) for row in conn.execute(query)]


def task_queues(engine: Engine) -> list[str]:
    """The queues task automations send to, disabled ones included (their queue may still
    hold tasks): Flower lists them (``sluice flower``)."""
    query = (
        select(automations.c.queue)
        .where(automations.c.action == str(Action.TASK), automations.c.queue.is_not(None))
        .distinct()
    )
    with engine.connect() as conn:
        return sorted(conn.scalars(query))


def list_automations(
    engine: Engine,
    workspace_id: str | None,
    *,
    newest_first: bool = False,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
    automation_id: str | None = None,
) -> list[dict[str, Any]]:
    """Automations (of one workspace, or all; one by ``automation_id``) with their trigger
    counts by status, oldest first or ``newest_first``; ``after`` (created_at ISO text, id)
    is where the previous page of a newest-first list ended."""
    table = automations
    order = (
        (table.c.created_at.desc(), table.c.id.desc())
        if newest_first
        else (table.c.created_at, table.c.id)
    )
    query = select(table).order_by(*order)
    if workspace_id is not None:
        query = query.where(table.c.workspace_id == workspace_id)
    if automation_id is not None:
        query = query.where(table.c.id == automation_id)
    if after is not None:
        query = query.where(older_than(table, after))
    if limit is not None:
        query = query.limit(limit)
    by_automation: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        if rows:
            counts = (
                select(
                    trigger_deliveries.c.automation_id, trigger_deliveries.c.status, func.count()
                )
                .where(
                    matches_any(
                        conn.dialect, trigger_deliveries.c.automation_id, [r.id for r in rows]
                    )
                )
                .group_by(trigger_deliveries.c.automation_id, trigger_deliveries.c.status)
            )
            for found_id, status, count in conn.execute(counts):
                by_automation.setdefault(found_id, {})[status] = count
    return [
        {
            "automation_id": row.id,
            "workspace_id": row.workspace_id,
            "on": row.event_name,
            "where": row.filters or {},
            "action": row.action,
            "target": row.target,
            "queue": row.queue,
            "status": row.status,
            "disabled_reason": row.disabled_reason,
            "created_at": as_utc(row.created_at).isoformat(),
            "triggers": by_automation.get(row.id, {}),
        }
        for row in rows
    ]


def show_automation(
    engine: Engine, workspace_id: str | None, automation_id: str
) -> dict[str, Any] | None:
    found = list_automations(engine, workspace_id, automation_id=automation_id)
    return found[0] if found else None


def _of_workspace(workspace_id: str | None, automation_id: str) -> Any:
    """The automation, if it is the workspace's (any workspace's for None: the command
    line, whose operator reaches every workspace)."""
    if workspace_id is None:
        return automations.c.id == automation_id
    return and_(automations.c.id == automation_id, automations.c.workspace_id == workspace_id)


def enable_automation(engine: Engine, workspace_id: str | None, automation_id: str) -> bool:
    """Enable a disabled automation again: it fires from its next matching event (the
    triggers cancelled while it was off stay cancelled). False if it is not disabled."""
    with writing(engine) as conn:
        done = conn.execute(
            update(automations)
            .where(
                _of_workspace(workspace_id, automation_id),
                automations.c.status == str(AutomationStatus.DISABLED),
            )
            .values(
                status=str(AutomationStatus.ACTIVE),
                disabled_reason=None,
                failing_since=None,
                updated_at=utc_now(),
            )
        )
    return done.rowcount == 1


def disable_in_workspace(
    engine: Engine, workspace_id: str | None, automation_id: str, reason: str
) -> bool:
    """``disable_automation`` for an operator, if the automation is the workspace's."""
    with writing(engine) as conn:
        owned = conn.execute(
            select(automations.c.id).where(_of_workspace(workspace_id, automation_id))
        ).first()
        return owned is not None and disable_automation(conn, automation_id, reason, utc_now())


def delete_automation(engine: Engine, workspace_id: str | None, automation_id: str) -> bool:
    """Delete an automation with its triggers and their attempts (the record goes too).
    A delivery under way at that moment is not recorded. False if there is none."""
    with writing(engine) as conn:
        done = conn.execute(delete(automations).where(_of_workspace(workspace_id, automation_id)))
    return done.rowcount == 1


def rotate_secret(engine: Engine, workspace_id: str | None, automation_id: str) -> str | None:
    """A new signing secret for a webhook automation, in force for its next attempt;
    None if the workspace has no such automation. ``ValueError`` for one that is not a
    webhook."""
    with writing(engine) as conn:
        row = conn.execute(
            select(automations.c.action).where(_of_workspace(workspace_id, automation_id))
        ).first()
        if row is None:
            return None
        if row.action != str(Action.WEBHOOK):
            raise ValueError("only a webhook automation has a signing secret")
        secret = new_secret()
        conn.execute(
            update(automations)
            .where(automations.c.id == automation_id)
            .values(secret=secret, updated_at=utc_now())
        )
    return secret


class RetryRefusal(StrEnum):
    NOT_FOUND = "not_found"
    UNDER_WAY = "under_way"  # an attempt holds its lease now
    DISABLED = "automation_disabled"  # no deliverer takes a disabled automation's triggers


def retry_trigger(
    engine: Engine, workspace_id: str | None, trigger_id: str, now: datetime | None = None
) -> RetryRefusal | None:
    """Make a trigger due again now, whatever its state (a failed or cancelled one too):
    its next attempt keeps the trigger's id, so a webhook carries the same ``webhook-id``.
    None when done, else why not."""
    now = now or utc_now()
    table = trigger_deliveries
    where = table.c.id == trigger_id
    if workspace_id is not None:
        where = and_(where, table.c.workspace_id == workspace_id)
    with writing(engine) as conn:
        row = conn.execute(
            select(table.c.lease_until, automations.c.status)
            .join(automations, automations.c.id == table.c.automation_id)
            .where(where)
            .with_for_update()
        ).first()
        if row is None:
            return RetryRefusal.NOT_FOUND
        if row.lease_until is not None and as_utc(row.lease_until) > now:
            return RetryRefusal.UNDER_WAY
        if row.status != str(AutomationStatus.ACTIVE):
            return RetryRefusal.DISABLED
        conn.execute(
            update(table)
            .where(table.c.id == trigger_id)
            .values(
                status=str(TriggerStatus.RETRYING),
                next_attempt_at=now,
                lease_until=None,
                updated_at=now,
            )
        )
    return None
