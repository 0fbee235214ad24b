"""Blocking database calls from the event loop, on a worker thread. An outage (the
database does not answer, refuses the connection, the pool is exhausted) is answered 503
with Retry-After; a value the database refuses (a NUL character, a number out of range)
is the request's fault, answered 400 and never counted as an outage."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from sluice.gateway.errors import ApiError

T = TypeVar("T")
log = logging.getLogger(__name__)


async def from_database(lookup: Callable[..., T], *args: Any) -> T:
    """``lookup(*args)`` in a worker thread: 400 for a value the database refuses, 503 with
    Retry-After when the database is unavailable."""
    try:
        return await run_in_threadpool(lookup, *args)
    except DataError as exc:
        log.info("a request's value was refused by the database: %s", exc.orig)
        raise ApiError(
            400, "invalid", "a value in this request cannot be looked up: " + refused(exc)
        ) from exc
    except SQLAlchemyError as exc:
        log.warning("the database is unavailable: %s", exc)
        raise ApiError(
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "5"},
        ) from exc


def refused(exc: DataError) -> str:
    """What the database refused, in words that name no table, column or query."""
    if "NUL" in str(exc.orig):
        return "text may not contain a NUL character (U+0000)"
    return "a value is out of range or of the wrong type"
