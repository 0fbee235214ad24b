"""Lists of the control plane: ``{"data": [...], "next_cursor": "…" | null}``, newest
first, with ``?limit=`` (1 to 200, default 50) and ``?cursor=`` (the ``next_cursor`` of the
page before; opaque to clients: base64 of where that page ended)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import Query

from sluice.gateway.admin.problems import invalid

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
