"""Dead letters: the batches (and lone events) a worker could not process, kept whole so that
an operator can read them and replay them (docs/dead-letters.md).

A worker records one here when it gives a batch up (poison, an unexpected error, too many
deliveries) and rejects the batch's events provisionally, with a detail that starts
``not processed:`` and names the dead letter. ``sluice dlq`` lists, shows and replays them
(replay: ``sluice.ops.replay``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, and_, case, func, select

from sluice.producer.envelope import MAX_BATCH_ID_CHARS, PoisonEnvelopeError, decode_envelope
from sluice.producer.events import as_utc
from sluice.store.schema import dead_letter_workspaces, dead_letters, outcomes

BATCH = "batch"
EVENT = "event"  # an event without workspace_id or message_id: it can have no outcome
PROVISIONAL_PREFIX = "not processed: "
REPLAY_MARK = ".r"


def provisional_note(reason: str, dead_letter_id: int) -> str:
    """The detail of the provisional rejection of a dead-lettered batch's events."""
    return (
        f"{PROVISIONAL_PREFIX}{reason}; dead letter {dead_letter_id} "
        f"(sluice dlq show {dead_letter_id})"
    )


def is_provisional() -> ColumnElement[bool]:
    """Outcomes that only say "not processed" (validation errors never start like that)."""
    return and_(
        outcomes.c.status == "rejected",
        func.coalesce(outcomes.c.detail, "").like(f"{PROVISIONAL_PREFIX}%"),
    )


def replay_batch_id(batch_id: str | None, dead_letter_id: int) -> str:
    """The id a dead letter is replayed as: ``<original>.r<dead letter id>``. A new id, so
    the message starts with a fresh delivery counter (keyed by task id, which is the batch
    id); derived from the dead letter, so replaying it can only ever publish this batch;
    and bounded: a replay of a replay replaces the mark instead of adding one."""
    base = batch_id or "dead-letter"
    head, mark, number = base.rpartition(REPLAY_MARK)
    if mark and number.isdigit():
        base = head
    suffix = f"{REPLAY_MARK}{dead_letter_id}"
    return base[: MAX_BATCH_ID_CHARS - len(suffix)] + suffix


def encode_payload(payload: Any) -> str:
    """The message as JSON text, whole (replay needs all of it)."""
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    return orjson.dumps(payload, default=repr).decode()


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    batch_id: str | None
    reason: str
    detail: str | None
    payload: str
    kind: str
    events: int | None  # None: the payload does not decode
    workspaces: Mapping[str, int]  # events per workspace, where known


def record_dead_letter(conn: Connection, letter: NewDeadLetter, now: datetime) -> int:
    """Insert a dead letter (in the caller's transaction); its id. A batch that failed again
    after a replay points at the dead letter it was replayed from."""
    replay_of = (
        select(dead_letters.c.id)
        .where(dead_letters.c.replay_batch_id == letter.batch_id)
        .order_by(dead_letters.c.id.desc())
        .limit(1)
        .scalar_subquery()
        if letter.batch_id is not None and letter.kind == BATCH
        else None
    )
    result = conn.execute(
        dead_letters.insert().values(
            batch_id=letter.batch_id,
            reason=letter.reason[:200],
            detail=letter.detail,
            payload=letter.payload,
            created_at=now,
            kind=letter.kind,
            events=letter.events,
            replay_of=replay_of,
        )
    )
    primary_key = result.inserted_primary_key
    assert primary_key is not None
    letter_id = int(primary_key[0])
    if letter.workspaces:
        conn.execute(
            dead_letter_workspaces.insert(),
            [
                {"dead_letter_id": letter_id, "workspace_id": ws, "events": n}
                for ws, n in letter.workspaces.items()
            ],
        )
    return letter_id


def list_dead_letters(
    engine: Engine, workspace_id: str | None = None, limit: int = 50, before_id: int | None = None
) -> list[dict[str, Any]]:
    """The newest dead letters first (those with events of ``workspace_id`` only, if given;
    older than ``before_id``, if given: the next page)."""
    query = select(*_SUMMARY).order_by(dead_letters.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(dead_letters.c.id < before_id)
    if workspace_id is not None:
        query = query.where(
            dead_letters.c.id.in_(
                select(dead_letter_workspaces.c.dead_letter_id).where(
                    dead_letter_workspaces.c.workspace_id == workspace_id
                )
            )
        )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        spread = _workspaces_of(conn, [row.id for row in rows])
    return [_summary(row, spread.get(row.id, {})) for row in rows]


def show_dead_letter(engine: Engine, dead_letter_id: int) -> dict[str, Any] | None:
    """Everything about one dead letter: its summary, the error's detail (a traceback for
    an unexpected error), the message decoded, and the dead letters its replay became."""
    with engine.connect() as conn:
        row = conn.execute(
            select(*_SUMMARY, dead_letters.c.detail, dead_letters.c.payload).where(
                dead_letters.c.id == dead_letter_id
            )
        ).one_or_none()
        if row is None:
            return None
        spread = _workspaces_of(conn, [row.id])
        again = conn.execute(
            select(dead_letters.c.id, dead_letters.c.reason)
            .where(dead_letters.c.replay_of == dead_letter_id)
            .order_by(dead_letters.c.id)
        ).all()
    payload, problem = decode_payload(row.payload)
    return {
        **_summary(row, spread.get(row.id, {})),
        "detail": row.detail,
        "payload": payload if problem is None else row.payload,
        "payload_error": problem,
        "replayable": replay_refusal(row.kind, problem) is None,
        "failed_again_as": [{"id": a.id, "reason": a.reason} for a in again],
    }


def decode_payload(text: str) -> tuple[Any, str | None]:
    """The payload as JSON, or why it is not (a payload truncated before migration 0006)."""
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        return None, f"the stored payload is not whole JSON ({exc}); it was truncated"


def replay_refusal(kind: str, payload_problem: str | None) -> str | None:
    """Why a dead letter cannot be replayed, or None."""
    if kind == EVENT:
        return (
            "an event without workspace_id or message_id can have no verdict; "
            "fix it at its source and send it again"
        )
    if payload_problem is not None:
        return f"{payload_problem} when it was dead-lettered, so it cannot be replayed"
    return None


def batch_keys(payload: Any) -> list[tuple[str, str]]:
    """The (workspace_id, message_id) of the events of a decodable batch that have both."""
    try:
        batch = decode_envelope(payload)
    except PoisonEnvelopeError:
        return []
    return [
        (item.workspace_id, item.message_id)
        for item in batch.items
        if item.workspace_id is not None and item.message_id is not None
    ]


def dead_letter_counts(engine: Engine, workspace_id: str | None = None) -> dict[str, Any]:
    """Dead letters, open and replayed: in all, and per workspace of their events."""
    replayed = case((dead_letters.c.replayed_at.is_not(None), 1), else_=0)
    per_workspace = (
        select(
            dead_letter_workspaces.c.workspace_id,
            func.count(),
            func.coalesce(func.sum(replayed), 0),
        )
        .join(dead_letters, dead_letters.c.id == dead_letter_workspaces.c.dead_letter_id)
        .group_by(dead_letter_workspaces.c.workspace_id)
    )
    if workspace_id is not None:
        per_workspace = per_workspace.where(dead_letter_workspaces.c.workspace_id == workspace_id)
    with engine.connect() as conn:
        total, done = conn.execute(
            select(func.count(), func.coalesce(func.sum(replayed), 0)).select_from(dead_letters)
        ).one()
        spread = {ws: _open_and_replayed(n, r) for ws, n, r in conn.execute(per_workspace)}
    if workspace_id is not None:
        return spread.get(workspace_id, _open_and_replayed(0, 0))
    return {**_open_and_replayed(total, done), "workspaces": spread}


def _open_and_replayed(total: int, replayed: int) -> dict[str, int]:
    return {"total": int(total), "open": int(total) - int(replayed), "replayed": int(replayed)}


_SUMMARY = (
    dead_letters.c.id,
    dead_letters.c.reason,
    dead_letters.c.batch_id,
    dead_letters.c.kind,
    dead_letters.c.events,
    dead_letters.c.created_at,
    dead_letters.c.replayed_at,
    dead_letters.c.replay_batch_id,
    dead_letters.c.replay_of,
)


def _summary(row: Any, workspaces: dict[str, int]) -> dict[str, Any]:
    return {
        "id": row.id,
        "reason": row.reason,
        "batch_id": row.batch_id,
        "kind": row.kind,
        "events": row.events,
        "created_at": as_utc(row.created_at).isoformat(),
        "workspaces": sorted(workspaces),
        "events_per_workspace": workspaces,
        "status": "replayed" if row.replayed_at is not None else "open",
        "replayed_at": as_utc(row.replayed_at).isoformat() if row.replayed_at else None,
        "replay_batch_id": row.replay_batch_id,
        "replay_of": row.replay_of,
    }


def _workspaces_of(conn: Connection, ids: list[int]) -> dict[int, dict[str, int]]:
    if not ids:
        return {}
    query = select(dead_letter_workspaces).where(dead_letter_workspaces.c.dead_letter_id.in_(ids))
    found: dict[int, dict[str, int]] = {}
    for row in conn.execute(query):
        found.setdefault(row.dead_letter_id, {})[row.workspace_id] = row.events
    return found
