"""What kind of failure an exception is, decided once (docs/conventions.md #5).

- transient: the database or Redis is unreachable, busy or read-only for a while; the
  batch is retried with backoff for as long as that lasts;
- unstorable: the database refuses a row (a value it cannot hold, a constraint); the batch
  is stored event by event so that only the offending events are rejected;
- anything else is a bug or a poison message: dead letter.
"""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

from sluice.producer.errors import PublishError

_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "busy")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, PublishError) and exc.__cause__ is not None:
        return is_transient(exc.__cause__)  # e.g. the journal's Redis restarting
    if isinstance(
        exc,
        redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.ReadOnlyError
        | redis.exceptions.OutOfMemoryError
        | kombu.exceptions.OperationalError,  # publishing: the broker is unreachable
    ):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(exc, sqlalchemy.exc.OperationalError):
            module = type(exc.orig).__module__
            if module.startswith("sqlite3"):
                text = str(exc.orig).lower()
                return any(marker in text for marker in _SQLITE_TRANSIENT)
            return True  # PostgreSQL: connection loss, deadlock, serialization, shutdown
    return False


def is_unstorable(exc: BaseException) -> bool:
    return isinstance(exc, sqlalchemy.exc.DataError | sqlalchemy.exc.IntegrityError) or (
        isinstance(exc, sqlalchemy.exc.StatementError)
        and not is_transient(exc)
        and not isinstance(exc, sqlalchemy.exc.DBAPIError)
    )
