"""An event's outcome as everyone shows it: ``GET /v1/events/{id}``, ``Prefer: wait``
and the export read it through ``EventOutcome``, in the field order of ``OUTCOME_FIELDS``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, select

from sluice.producer.events import as_utc
from sluice.rules import Reason, Status
from sluice.store.engine import matches_any
from sluice.store.schema import EVENT_COLUMNS, events, outcomes

# What an outcome shows, in order: the outcome row's columns, and what a stored event's row
# keeps of a Segment group or alias call (``group_id``, ``previous_id``).
OUTCOME_FIELDS = (
    "message_id",
    "status",
    "reason",
    "detail",
    "kind",
    "name",
    "decided_at",
    "group_id",
    "previous_id",
    "raw",
)
STORED_EVENT_FIELDS = ("group_id", "previous_id")  # from ``events``, the rest from ``outcomes``


@dataclass(frozen=True, slots=True)
class EventOutcome:
    workspace_id: str
    message_id: str
    status: Status
    reason: Reason | None
    detail: str | None
    kind: str | None
    name: str | None
    decided_at: datetime
    group_id: str | None = None  # a stored Segment group call's groupId
    previous_id: str | None = None  # a stored Segment alias call's previousId
    raw: str | None = None  # a truncated copy of a discarded or rejected event

    @classmethod
    def from_row(cls, row: Any) -> EventOutcome:
        """From a row with the columns of ``outcomes`` (and, joined, those of
        ``STORED_EVENT_FIELDS``: null or absent for an event that was not stored)."""
        return cls(
            workspace_id=row.workspace_id,
            message_id=row.message_id,
            status=Status(row.status),
            reason=Reason(row.reason) if row.reason else None,
            detail=row.detail,
            kind=row.kind,
            name=row.name,
            decided_at=as_utc(row.decided_at),
            group_id=getattr(row, "group_id", None),
            previous_id=getattr(row, "previous_id", None),
            raw=row.raw,
        )

    def fields(self) -> dict[str, Any]:
        """The shown fields, in ``OUTCOME_FIELDS`` order."""
        return {name: getattr(self, name) for name in OUTCOME_FIELDS}

    def verdict(self) -> dict[str, Any]:
        """The verdict alone (``Prefer: wait`` answers with it)."""
        return {"status": str(self.status), "reason": self.reason, "detail": self.detail}


def outcomes_of(
    engine: Engine, workspace_id: str, message_ids: Sequence[str]
) -> dict[str, EventOutcome]:
    """The decided ones among ``message_ids``, one query."""
    if not message_ids:
        return {}
    with engine.connect() as conn:
        query = select(outcomes).where(
            outcomes.c.workspace_id == workspace_id,
            matches_any(conn.dialect, outcomes.c.message_id, message_ids),
        )
        return {row.message_id: EventOutcome.from_row(row) for row in conn.execute(query)}


def outcome_of(engine: Engine, workspace_id: str, message_id: str) -> EventOutcome | None:
    """One event's outcome, with what its stored row keeps of a Segment group or alias
    call (an event that was not stored has none)."""
    stored = and_(
        events.c.workspace_id == outcomes.c.workspace_id,
        events.c.message_id == outcomes.c.message_id,
    )
    query = (
        select(outcomes, *(events.c[name] for name in STORED_EVENT_FIELDS))
        .select_from(outcomes.outerjoin(events, stored))
        .where(outcomes.c.workspace_id == workspace_id, outcomes.c.message_id == message_id)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return EventOutcome.from_row(row) if row is not None else None


def _shown(value: Any) -> Any:
    return as_utc(value).isoformat() if isinstance(value, datetime) else value


def stored_event(engine: Engine, workspace_id: str, message_id: str) -> dict[str, Any] | None:
    """The stored event (its ``EVENT_COLUMNS``, ``is_bot`` and ``stored_at``), or None for
    one that was not stored (discarded, rejected, or not decided yet)."""
    columns = [events.c[name] for name in (*EVENT_COLUMNS, "is_bot", "stored_at")]
    query = select(*columns).where(
        events.c.workspace_id == workspace_id, events.c.message_id == message_id
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    # str(): a selected column's name is a str subclass, which orjson refuses as a key
    return {str(key): _shown(value) for key, value in row._asdict().items()}


def outcome_page(
    engine: Engine,
    workspace_id: str,
    *,
    limit: int,
    before_id: int | None = None,
    status: str | None = None,
    reason: str | None = None,
    name: str | None = None,
    user_id: str | None = None,
    email: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """A workspace's outcomes, newest decided first, filtered; with the user id, email and
    event time of those that were stored. Each carries its ``cursor`` (the outcome's row
    id): the next page is ``before_id`` the last one's."""
    stored = and_(
        events.c.workspace_id == outcomes.c.workspace_id,
        events.c.message_id == outcomes.c.message_id,
    )
    query = (
        select(
            outcomes,
            events.c.user_id,
            events.c.email,
            events.c.timestamp,
            events.c.source,
        )
        .select_from(outcomes.outerjoin(events, stored))
        .where(outcomes.c.workspace_id == workspace_id)
        .order_by(outcomes.c.id.desc())
        .limit(limit)
    )
    for column, value in (
        (outcomes.c.status, status),
        (outcomes.c.reason, reason),
        (outcomes.c.name, name),
        (events.c.user_id, user_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if email is not None:  # stored as sent; found whatever its case
        query = query.where(func.lower(events.c.email) == email.lower())
    if before_id is not None:
        query = query.where(outcomes.c.id < before_id)
    if since is not None:
        query = query.where(outcomes.c.decided_at >= since)
    if until is not None:
        query = query.where(outcomes.c.decided_at < until)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "message_id": row.message_id,
            "status": row.status,
            "reason": row.reason,
            "detail": row.detail,
            "kind": row.kind,
            "name": row.name,
            "user_id": row.user_id,
            "email": row.email,
            "timestamp": _shown(row.timestamp),
            "decided_at": _shown(row.decided_at),
            "source": row.source,
            "cursor": row.id,
        }
        for row in rows
    ]
