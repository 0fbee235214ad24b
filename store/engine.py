"""Engines for PostgreSQL (psycopg 3) and SQLite through one SQLAlchemy code path."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import StatementError

SQLITE_BUSY_TIMEOUT_S = 30
MAX_DOCUMENT_BYTES = 64 * 2**20  # rows sent to PostgreSQL in one JSON parameter
WRITE_OPTION = "sluice_write"
_JSON_CODEC: dict[str, Any] = {
    "json_serializer": lambda value: orjson.dumps(value).decode(),
    "json_deserializer": orjson.loads,
}


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 here."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pre_ping: bool = True) -> Engine:
    """An engine for ``url``. ``pre_ping=False`` saves a round trip per checkout: a
    connection the server dropped then fails its first statement, SQLAlchemy discards the
    pool's connections, and the caller treats the error as transient and tries again (the
    worker retries the batch, ``sluice.worker.failures``)."""
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # Up to 20 connections, for the threads of one process (a gateway's, a deliverer's).
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=5, max_overflow=15, **_JSON_CODEC)


def ping(engine: Engine) -> None:
    """Raise unless the database answers a trivial query."""
    with engine.connect() as conn:
        conn.execute(select(1))


_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def _sqlite_engine(url: str) -> Engine:
    # Several worker processes write one file: WAL lets readers run beside the writer, and
    # a write transaction (``writing``) starts with BEGIN IMMEDIATE, taking the write lock
    # up front so a busy writer waits (busy timeout) instead of failing when it upgrades a
    # read transaction. Reads begin deferred and never wait for writers.
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}, **_JSON_CODEC
    )
    _SQLITE_WRITERS[engine] = threading.RLock()  # see ``writing``

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction (committed on exit); on SQLite it holds the write lock from BEGIN.

    SQLite has one writer at a time. Threads of one process (a delivery worker) queue for
    it on a lock here, handed over at once, rather than in SQLite's busy handler, which
    polls with sleeps of up to 100 ms while the lock is free again within a millisecond."""
    with _SQLITE_WRITERS.get(engine) or nullcontext(), engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


def matches_any(
    dialect: Dialect, column: ColumnElement[str], values: Collection[str]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL as ``= ANY(:array)``: one parameter, so the
    statement stays short (psycopg caches and prepares it) and is planned as an index scan
    however many values there are."""
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String())))
    return column.in_(list(values))


def point_lookup(
    dialect: Dialect,
    columns: Sequence[Column[Any]],
    key: Column[str],
    values: Collection[str],
    *where: ColumnElement[bool],
) -> Select[Any]:
    """``columns`` of the rows whose ``key`` is one of ``values`` (and that match ``where``),
    at most one row a value: for a key unique within the conditions of ``where``.

    On PostgreSQL, as ``unnest(:values)`` joined to a ``LATERAL (… LIMIT 1)`` subquery: one
    index probe per value, a plan that cannot become a scan of the whole workspace however
    stale the table's statistics are (with ``= ANY``, a planner that believes the workspace
    small reads all of it per batch). Elsewhere ``key IN values``."""
    if dialect.name != "postgresql":
        return select(*columns).where(*where, key.in_(list(values)))
    wanted = (
        func.unnest(bindparam(None, list(values), type_=ARRAY(String())))
        .table_valued("value")
        .render_derived(name="wanted")
    )
    found = select(*columns).where(*where, key == wanted.c.value).limit(1).lateral("found")
    return select(*(found.c[column.name] for column in columns)).select_from(
        wanted.join(found, true())
    )


def insert_ignoring_conflicts(
    conn: Connection,
    table: Table,
    rows: Iterable[Mapping[str, Any]],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Multi-row ``INSERT … ON CONFLICT DO NOTHING`` on either backend. With ``returning``,
    those columns of the rows it inserted (a row skipped for a conflict is not returned).

    On PostgreSQL the rows travel as one JSON document that ``jsonb_to_recordset`` expands
    on the server: one statement and one parameter per call, whatever the number of rows,
    where a pipelined ``executemany`` costs the client a bound statement per row (about ten
    times the CPU, bench/RESULTS.md). Every row must have the same keys."""
    rows = list(rows)
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        keys = _shared_keys(table, rows)
        statement = _recordset_insert(conn.dialect, table, keys, tuple(returning))
        found: list[tuple[Any, ...]] = []
        for document in _documents(statement, rows):
            result = conn.exec_driver_sql(statement, (document,))
            found += [tuple(row) for row in result] if returning else []
        return found
    insert = sqlite_insert(table).on_conflict_do_nothing()
    returned = [table.c[name] for name in returning]
    result = conn.execute(insert.returning(*returned) if returned else insert, rows)
    return [tuple(row) for row in result] if returning else []


def _documents(statement: str, rows: list[Mapping[str, Any]]) -> Iterator[str]:
    """The rows as JSON documents of at most ``MAX_DOCUMENT_BYTES`` each (PostgreSQL takes
    no value over 1 GB and its JSON parser less), halving a batch until it fits.

    A row JSON cannot hold raises ``StatementError``, which the worker treats as a row the
    database refuses (``sluice.worker.failures.is_unstorable``): the batch is then stored
    event by event. JSON ``null`` in a JSON column is stored as SQL ``NULL`` here."""
    try:
        document = orjson.dumps(rows)
    except orjson.JSONEncodeError as exc:
        raise StatementError(f"a row cannot be sent as JSON: {exc}", statement, None, exc) from exc
    if len(document) <= MAX_DOCUMENT_BYTES or len(rows) == 1:
        yield document.decode()
        return
    half = len(rows) // 2
    yield from _documents(statement, rows[:half])
    yield from _documents(statement, rows[half:])


def _shared_keys(table: Table, rows: list[Mapping[str, Any]]) -> tuple[str, ...]:
    """The columns of the rows, which must all have the same (a missing key would be
    stored as NULL by ``jsonb_to_recordset``)."""
    keys = rows[0].keys()
    if any(row.keys() != keys for row in rows):
        raise ValueError(f"{table.name}: rows with different columns in one statement")
    return tuple(keys)


def _recordset(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    """``jsonb_to_recordset(%s::jsonb) AS r(<column> <type>, …)`` over ``table``'s types."""
    quote = dialect.identifier_preparer.quote
    typed = ", ".join(
        f"{quote(name)} {table.c[name].type.compile(dialect=dialect)}" for name in columns
    )
    return f"jsonb_to_recordset(%s::jsonb) AS r({typed})"


@lru_cache(maxsize=64)
def _recordset_insert(
    dialect: Dialect, table: Table, columns: tuple[str, ...], returning: tuple[str, ...]
) -> str:
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    statement = (
        f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} "
        f"FROM {_recordset(dialect, table, columns)} ON CONFLICT DO NOTHING"
    )
    if returning:
        statement += " RETURNING " + ", ".join(quote(name) for name in returning)
    return statement


def update_by_key(
    conn: Connection,
    table: Table,
    key: str | tuple[str, ...],
    rows: Iterable[Mapping[str, Any]],
) -> None:
    """For each row, ``UPDATE table SET <its other columns> WHERE <key columns> = the
    row's``. On PostgreSQL one statement for all rows (as ``insert_ignoring_conflicts``);
    on SQLite an ``executemany``. Every row must have the same keys."""
    rows = list(rows)
    if not rows:
        return
    keys = _shared_keys(table, rows)
    matched = (key,) if isinstance(key, str) else key
    if conn.dialect.name == "postgresql":
        statement = _recordset_update(conn.dialect, table, matched, keys)
        for document in _documents(statement, rows):
            conn.exec_driver_sql(statement, (document,))
        return
    values: dict[str, Any] = {
        name: bindparam(f"new_{name}") for name in keys if name not in matched
    }
    where = [table.c[name] == bindparam(f"new_{name}") for name in matched]
    conn.execute(
        table.update().where(*where).values(values),
        [{f"new_{name}": value for name, value in row.items()} for row in rows],
    )


@lru_cache(maxsize=64)
def _recordset_update(
    dialect: Dialect, table: Table, matched: tuple[str, ...], columns: tuple[str, ...]
) -> str:
    quote = dialect.identifier_preparer.quote
    assignments = ", ".join(
        f"{quote(name)} = r.{quote(name)}" for name in columns if name not in matched
    )
    where = " AND ".join(f"t.{quote(name)} = r.{quote(name)}" for name in matched)
    return (
        f"UPDATE {quote(table.name)} AS t SET {assignments} "
        f"FROM {_recordset(dialect, table, columns)} WHERE {where}"
    )


def by_workspace(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Group (workspace_id, key) pairs, for ``workspace_id = ? AND key IN (...)`` queries:
    an index range scan, where a row-value ``IN`` of hundreds of pairs is planned as a
    slow ``OR`` chain."""
    grouped: dict[str, set[str]] = {}
    for workspace_id, key in keys:
        grouped.setdefault(workspace_id, set()).add(key)
    return {workspace_id: sorted(values) for workspace_id, values in grouped.items()}


def older_than(table: Table, after: tuple[str, str]) -> ColumnElement[bool]:
    """The rows of ``table`` after ``after`` (its ``created_at`` as ISO text, its ``id``) in
    a newest-first list ordered by ``(created_at, id)``: the next page of the control plane."""
    created_at, last_id = datetime.fromisoformat(after[0]), after[1]
    return or_(
        table.c.created_at < created_at,
        and_(table.c.created_at == created_at, table.c.id < last_id),
    )
