"""Blocking database calls from the event loop: on a worker thread, a database error
answered as a 503 with Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from sluice.gateway.errors import ApiError

T = TypeVar("T")


async def from_database(lookup: Callable[..., T], *args: Any) -> T:
    """``lookup(*args)`` in a worker thread; a database error becomes a 503 with Retry-After."""
    try:
        return await run_in_threadpool(lookup, *args)
    except SQLAlchemyError as exc:
        raise ApiError(
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "5"},
        ) from exc
