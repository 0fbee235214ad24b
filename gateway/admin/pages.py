"""Lists of the control plane: ``{"data": [...], "next_cursor": "…" | null}``, newest
first, with ``?limit=`` (1 to 200, default 50) and ``?cursor=`` (the ``next_cursor`` of the
page before; opaque to clients: base64 of where that page ended)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Query

from sluice.gateway.admin.problems import Problem, invalid
from sluice.producer.events import as_utc

MAX_LIMIT = 200
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Cursor = Annotated[
    str | None, Query(max_length=500, description="next_cursor of the previous page")
]


def encode_cursor(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    """Where the previous page ended, or None for the first page; 422 for a cursor this
    API did not give."""
    if cursor is None:
        return None
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        position = None
    if not isinstance(position, list):
        raise invalid([{"field": "cursor", "message": "not a cursor this API gave"}])
    return position


def page(data: list[dict[str, Any]], next_position: list[Any] | None) -> dict[str, Any]:
    return {
        "data": data,
        "next_cursor": None if next_position is None else encode_cursor(next_position),
    }


MAX_ROW_ID = 2**63 - 1  # a BIGINT


def _refused() -> Problem:
    return invalid([{"field": "cursor", "message": "not a cursor this API gave"}])


def after_time_and_id(cursor: str | None) -> tuple[str, str] | None:
    """A cursor of a list ordered by (creation time, id): where the previous page ended."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if len(position) != 2 or not all(isinstance(part, str) for part in position):
        raise _refused()
    try:
        at = datetime.fromisoformat(position[0])
    except ValueError as exc:
        raise _refused() from exc
    if at.tzinfo is None:
        raise _refused()
    return position[0], position[1]


def before_row_id(cursor: str | None) -> int | None:
    """A cursor of a list ordered by row id, newest first: the last id of the page before."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if len(position) != 1 or type(position[0]) is not int or not 1 <= position[0] <= MAX_ROW_ID:
        raise _refused()
    return position[0]


def utc_query(value: datetime | None, field: str) -> datetime | None:
    """A time from the query string in UTC; 422 for one whose UTC is outside years 1-9999."""
    if value is None:
        return None
    try:
        return as_utc(value)
    except (ValueError, OverflowError) as exc:
        raise invalid([{"field": field, "message": "out of range once in UTC"}]) from exc
