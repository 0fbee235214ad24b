"""The rows decisions become in the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from sluice.rules.decisions import Decision
from sluice.store.schema import EVENT_COLUMNS, EVENT_HINTS

RAW_LIMIT_BYTES = 4096


def truncate(data: bytes, limit: int) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return text if len(data) <= limit else text + "…"


def event_row(decision: Decision, batch_id: str, now: datetime) -> dict[str, Any]:
    event = decision.event
    assert event is not None
    # The validated fields as they are (a model_dump would copy each of them again).
    row = {name: getattr(event, name) for name in EVENT_COLUMNS}
    row["kind"] = str(event.kind)
    row["batch_id"] = batch_id
    row["stored_at"] = now
    row["is_bot"] = decision.bot
    return row


def raw_copy(decision: Decision) -> str:
    # What arrived, as the adapter mapped it: the rules' hints are not part of it.
    event = decision.event
    source = event.model_dump(mode="json", exclude=set(EVENT_HINTS)) if event else decision.raw
    return truncate(orjson.dumps(source, default=repr), RAW_LIMIT_BYTES)


def outcome_row(decision: Decision, batch_id: str, now: datetime) -> dict[str, Any]:
    verdict, event = decision.verdict, decision.event
    return {
        "workspace_id": decision.workspace_id,
        "message_id": decision.message_id,
        "status": str(verdict.status),
        "reason": str(verdict.reason) if verdict.reason else None,
        "detail": verdict.detail,
        "kind": str(event.kind) if event is not None else None,
        "name": event.name if event is not None else None,
        "raw": raw_copy(decision) if verdict.reason is not None else None,
        "batch_id": batch_id,
        "decided_at": now,
    }


def repeat_row(decision: Decision, batch_id: str, now: datetime) -> dict[str, Any]:
    return {
        "workspace_id": decision.workspace_id,
        "message_id": decision.message_id,
        "batch_id": batch_id,
        "raw": raw_copy(decision),
        "seen_at": now,
    }
