"""A workspace's events with their outcomes, as NDJSON, in constant memory (``sluice events
export``, docs/data-lifecycle.md "Export").

Every decided event has an outcome row; the accepted ones also have an ``events`` row, the
discarded and rejected ones only the outcome (with its truncated raw copy). The export reads
two ordered streams and merges them:

- stored events joined to their outcomes, by event time (``events.timestamp``, the index
  ``ix_events_workspace_timestamp`` of migration 0008), then ``events.id``;
- outcomes without an ``events`` row, by ``decided_at`` (they have no event time in a
  column), then ``outcomes.id``.

On PostgreSQL each stream is one query read through a server-side cursor (psycopg's named
cursor, ``stream_results``) in one transaction. On SQLite each stream is read in pages by
keyset (``(time, id)`` after the last row), one short read transaction per page, so the
export never holds a snapshot that keeps the WAL from being checkpointed.

A line carries the field names of ``GET /v1/events/{id}`` where they overlap (``message_id``,
``status``, ``reason``, ``detail``, ``kind``, ``name``, ``decided_at``, ``group_id``,
``previous_id``, ``raw``, ``triggers``) and those of the canonical event for the rest
(docs/architecture.md §2). Times are ISO 8601 in UTC with ``Z``, as the API writes them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Engine,
    Select,
    Text,
    and_,
    cast,
    exists,
    literal,
    or_,
    select,
    true,
)

from sluice.producer.events import as_utc
from sluice.rules import Status
from sluice.store.outcomes import OUTCOME_FIELDS, STORED_EVENT_FIELDS
from sluice.store.schema import EVENT_COLUMNS, events, outcomes, workspaces
from sluice.store.views import triggers_by_message

EXPORT_CHUNK_ROWS = 2000
# Datetimes from SQLite are naive UTC; PostgreSQL's are read in UTC (``SET LOCAL``).
_ENCODE = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
EXPORTABLE = (Status.ACCEPTED, Status.DISCARDED, Status.REJECTED)  # queued: only in Redis
# A line: the outcome's fields (as the API shows them, with the workspace), then the stored
# event's other columns, event time first; JSON columns are embedded as the database keeps
# them. A stored event's row gives what both tables have, the outcome row the verdict.
OUTCOME_PART = ("message_id", "workspace_id", *OUTCOME_FIELDS[1:])
VERDICT_COLUMNS = frozenset(OUTCOME_FIELDS) - frozenset(EVENT_COLUMNS)
EVENT_PART = (
    "timestamp",
    *(name for name in EVENT_COLUMNS if name not in {*OUTCOME_PART, "timestamp"}),
)
JSON_COLUMNS = frozenset(name for name in EVENT_PART if isinstance(events.c[name].type, JSON))


class UnknownWorkspaceError(LookupError):
    """The workspace to export does not exist."""


@dataclass(frozen=True, slots=True)
class ExportSelection:
    """Which events to export. ``since`` is inclusive and ``until`` exclusive, in event time
    for stored events and in decision time for outcome-only ones."""

    workspace_id: str
    since: datetime | None = None
    until: datetime | None = None
    status: Status | None = None
    limit: int | None = None
    with_triggers: bool = False


def export_ndjson(
    engine: Engine, selection: ExportSelection, chunk_rows: int = EXPORT_CHUNK_ROWS
) -> Iterator[bytes]:
    """The export as chunks of up to ``chunk_rows`` NDJSON lines each (bytes ending in a
    newline). Checks the workspace before returning, so that an unknown one raises
    ``UnknownWorkspaceError`` before any output; the rows are read as the chunks are taken."""
    if selection.status is not None and selection.status not in EXPORTABLE:
        raise ValueError(f"{selection.status} events are not in the database")
    with engine.connect() as conn:
        found = conn.execute(
            select(workspaces.c.id).where(workspaces.c.id == selection.workspace_id)
        ).first()
    if found is None:
        raise UnknownWorkspaceError(f"no workspace {selection.workspace_id!r}")
    return _chunks(engine, selection, chunk_rows)


def _chunks(engine: Engine, selection: ExportSelection, chunk_rows: int) -> Iterator[bytes]:
    rows = _rows(engine, selection, chunk_rows)
    left = selection.limit
    try:
        while left is None or left > 0:
            take = chunk_rows if left is None else min(chunk_rows, left)
            chunk = [row for _, row in zip(range(take), rows, strict=False)]
            if not chunk:
                return
            fired = (
                _triggers(engine, selection.workspace_id, chunk)
                if selection.with_triggers
                else None
            )
            yield b"".join(_line(row, fired) for row in chunk)
            if left is not None:
                left -= len(chunk)
    finally:
        rows.close()  # at --limit or an early stop: the cursor and its connection


def _rows(engine: Engine, selection: ExportSelection, chunk_rows: int) -> Generator[Any]:
    """Both streams merged by (time, stream, id)."""
    if engine.dialect.name == "postgresql":
        yield from _streamed(engine, selection, chunk_rows)
        return
    stored = _paged(engine, lambda after: stored_events_query(selection, after), chunk_rows)
    decided = _paged(engine, lambda after: outcome_only_query(selection, after), chunk_rows)
    yield from _merged(stored, decided)


def _streamed(engine: Engine, selection: ExportSelection, chunk_rows: int) -> Iterator[Any]:
    with engine.connect() as conn:
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # in the transaction it began
        streaming = conn.execution_options(stream_results=True, yield_per=chunk_rows)
        stored = streaming.execute(stored_events_query(selection, None))
        decided = streaming.execute(outcome_only_query(selection, None))
        try:
            yield from _merged(stored, decided)
        finally:
            stored.close()
            decided.close()


def _paged(
    engine: Engine, query_after: Callable[[tuple[Any, int] | None], Select[Any]], chunk_rows: int
) -> Iterator[Any]:
    after: tuple[Any, int] | None = None
    while True:
        with engine.connect() as conn:
            page = conn.execute(query_after(after).limit(chunk_rows)).all()
        yield from page
        if len(page) < chunk_rows:
            return
        after = (page[-1].sort_time, page[-1].row_id)


def _merged(stored: Iterable[Any], decided: Iterable[Any]) -> Iterator[Any]:
    keyed = heapq.merge(
        ((row.sort_time, 0, row.row_id, row) for row in stored),
        ((row.sort_time, 1, row.row_id, row) for row in decided),
        key=lambda item: item[:3],
    )
    return (item[3] for item in keyed)


def _after(
    time: ColumnElement[Any], row_id: ColumnElement[Any], after: tuple[Any, int] | None
) -> ColumnElement[bool]:
    if after is None:
        return true()
    last_time, last_id = after
    # ``time >= t`` first: a range of the index, then the ties on the id.
    return and_(time >= last_time, or_(time > last_time, row_id > last_id))


def _window(time: ColumnElement[Any], selection: ExportSelection) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if selection.since is not None:
        found.append(time >= as_utc(selection.since))
    if selection.until is not None:
        found.append(time < as_utc(selection.until))
    return found


def _status(selection: ExportSelection) -> list[ColumnElement[bool]]:
    return [] if selection.status is None else [outcomes.c.status == str(selection.status)]


def stored_events_query(selection: ExportSelection, after: tuple[Any, int] | None) -> Select[Any]:
    """Stored events with their outcomes, by event time then id."""
    joined = events.outerjoin(
        outcomes,
        and_(
            outcomes.c.workspace_id == events.c.workspace_id,
            outcomes.c.message_id == events.c.message_id,
        ),
    )
    return (
        select(
            events.c.id.label("row_id"),
            events.c.timestamp.label("sort_time"),
            literal(True).label("stored"),
            *(
                outcomes.c[name] if name in VERDICT_COLUMNS else events.c[name]
                for name in OUTCOME_PART
            ),
            *(
                # As the text the database keeps: embedded in the line without decoding.
                cast(events.c[name], Text).label(name) if name in JSON_COLUMNS else events.c[name]
                for name in EVENT_PART
            ),
            events.c.is_bot,
            events.c.batch_id,
        )
        .select_from(joined)
        .where(
            events.c.workspace_id == selection.workspace_id,
            *_window(events.c.timestamp, selection),
            *_status(selection),
            _after(events.c.timestamp, events.c.id, after),
        )
        .order_by(events.c.timestamp, events.c.id)
    )


def outcome_only_query(selection: ExportSelection, after: tuple[Any, int] | None) -> Select[Any]:
    """Outcomes of events that were not stored (discarded, rejected), by decision time."""
    stored = exists().where(
        events.c.workspace_id == outcomes.c.workspace_id,
        events.c.message_id == outcomes.c.message_id,
    )
    return (
        select(
            outcomes.c.id.label("row_id"),
            outcomes.c.decided_at.label("sort_time"),
            literal(False).label("stored"),
            *(outcomes.c[name] for name in OUTCOME_PART if name not in STORED_EVENT_FIELDS),
            outcomes.c.batch_id,
        )
        .where(
            outcomes.c.workspace_id == selection.workspace_id,
            ~stored,
            *_window(outcomes.c.decided_at, selection),
            *_status(selection),
            _after(outcomes.c.decided_at, outcomes.c.id, after),
        )
        .order_by(outcomes.c.decided_at, outcomes.c.id)
    )


def _triggers(
    engine: Engine, workspace_id: str, chunk: Sequence[Any]
) -> dict[str, list[dict[str, Any]]]:
    accepted = [row.message_id for row in chunk if row.stored]
    if not accepted:
        return {}
    with engine.connect() as conn:
        found = triggers_by_message(conn, workspace_id, accepted)
    return {message_id: [_z(view) for view in views] for message_id, views in found.items()}


def _z(view: dict[str, Any]) -> dict[str, Any]:
    """A trigger's times in UTC end in ``Z`` here, as the API writes them."""
    return {
        key: value.removesuffix("+00:00") + "Z"
        if key.endswith("_at") and isinstance(value, str) and value.endswith("+00:00")
        else value
        for key, value in view.items()
    }


def _json(text: str | None) -> orjson.Fragment | None:
    return orjson.Fragment(text) if text is not None else None


def export_line(row: Any, fired: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """One exported event as a dict: the outcome's fields as ``GET /v1/events/{id}`` names
    them, then the stored event's (null for an event that was not stored)."""
    stored = bool(row.stored)
    line: dict[str, Any] = {
        name: getattr(row, name) if stored or name not in STORED_EVENT_FIELDS else None
        for name in OUTCOME_PART
    }
    line["stored"] = stored
    for name in EVENT_PART:
        value = getattr(row, name) if stored else None
        line[name] = _json(value) if name in JSON_COLUMNS else value
    line["is_bot"] = bool(row.is_bot) if stored else None
    line["batch_id"] = row.batch_id
    if fired is not None:
        line["triggers"] = fired.get(row.message_id, [])
    return line


def _line(row: Any, fired: dict[str, list[dict[str, Any]]] | None) -> bytes:
    return orjson.dumps(export_line(row, fired), option=_ENCODE) + b"\n"


__all__ = [
    "EXPORTABLE",
    "ExportSelection",
    "UnknownWorkspaceError",
    "export_line",
    "export_ndjson",
]
