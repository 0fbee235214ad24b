"""Persistence of a decided batch, outcome lookups and the dead-letter table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, select

from producer.events import Event, as_utc
from rules import Reason, Status, Verdict
from worker.db import insert_ignoring_conflicts
from worker.schema import dead_letters, events, outcomes, workspaces

RAW_LIMIT_BYTES = 4096
DEAD_LETTER_LIMIT_BYTES = 1_000_000


def truncate(data: bytes, limit: int) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return text if len(data) <= limit else text + "…"


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict for one event of a batch; ``event`` is None for an event that did not
    validate (then ``raw`` is what arrived)."""

    workspace_id: str
    message_id: str
    verdict: Verdict
    event: Event | None = None
    raw: Any = None


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    workspace_id: str
    message_id: str
    status: Status
    reason: Reason | None
    detail: str | None
    kind: str | None
    name: str | None
    decided_at: datetime


class EventStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def existing_workspaces(self, ids: Iterable[str]) -> set[str]:
        wanted = set(ids)
        if not wanted:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(workspaces.c.id).where(workspaces.c.id.in_(wanted)))
            return {row.id for row in rows}

    def record_batch(self, batch_id: str, decisions: Sequence[Decision], now: datetime) -> None:
        """Store accepted events and every outcome in one transaction.

        Both inserts skip rows whose (workspace, message_id) exists already, so a
        redelivered batch changes nothing and the first verdict stands.
        """
        event_rows = [
            _event_row(d.event, batch_id, now)
            for d in decisions
            if d.event is not None and d.verdict.status is Status.ACCEPTED
        ]
        outcome_rows = [_outcome_row(d, batch_id, now) for d in decisions]
        with self.engine.begin() as conn:
            insert_ignoring_conflicts(conn, events, event_rows)
            insert_ignoring_conflicts(conn, outcomes, outcome_rows)

    def outcome(self, workspace_id: str, message_id: str) -> OutcomeRecord | None:
        query = select(outcomes).where(
            outcomes.c.workspace_id == workspace_id, outcomes.c.message_id == message_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        decided_at = as_utc(row.decided_at)
        return OutcomeRecord(
            workspace_id=row.workspace_id,
            message_id=row.message_id,
            status=Status(row.status),
            reason=Reason(row.reason) if row.reason else None,
            detail=row.detail,
            kind=row.kind,
            name=row.name,
            decided_at=decided_at,
        )

    def dead_letter(
        self, *, batch_id: str | None, reason: str, detail: str | None, payload: Any, now: datetime
    ) -> None:
        encoded = payload if isinstance(payload, bytes) else orjson.dumps(payload, default=repr)
        with self.engine.begin() as conn:
            conn.execute(
                dead_letters.insert().values(
                    batch_id=batch_id,
                    reason=reason[:200],
                    detail=detail,
                    payload=truncate(encoded, DEAD_LETTER_LIMIT_BYTES),
                    created_at=now,
                )
            )


def _event_row(event: Event, batch_id: str, now: datetime) -> dict[str, Any]:
    row = event.model_dump()
    row["kind"] = str(event.kind)
    row["batch_id"] = batch_id
    row["stored_at"] = now
    return row


def _outcome_row(decision: Decision, batch_id: str, now: datetime) -> dict[str, Any]:
    verdict, event = decision.verdict, decision.event
    raw = None
    if verdict.status is not Status.ACCEPTED:
        source = event.model_dump(mode="json") if event is not None else decision.raw
        raw = truncate(orjson.dumps(source, default=repr), RAW_LIMIT_BYTES)
    return {
        "workspace_id": decision.workspace_id,
        "message_id": decision.message_id,
        "status": str(verdict.status),
        "reason": str(verdict.reason) if verdict.reason else None,
        "detail": verdict.detail,
        "kind": str(event.kind) if event is not None else None,
        "name": event.name if event is not None else None,
        "raw": raw,
        "batch_id": batch_id,
        "decided_at": now,
    }
