"""The naive pipeline a team writes first: one Celery task per event, one commit per event.

A baseline for ``bench/throughput.py``, on the same Redis and database as Sluice, with the
same event model (``sluice.producer.events``) and bot list (``sluice.rules.bots``), so the
comparison is of the pipeline's shape only:

- the producer sends one task message per event (``send_task``, JSON, queue
  ``naive.events``); the task is acknowledged late;
- each task makes its rule checks as single Redis calls: an order is claimed with
  ``SET key NX``, an email open with ``SET key NX EX 1200`` (a wall-clock window, where Sluice
  uses event time), with no batching and no pipelining;
- each task then commits once: the event row (when accepted), its outcome row, and for
  logins and updates the contact, in tables of its own (``naive_events``,
  ``naive_outcomes``, ``naive_contacts``) with unique ``(workspace_id, message_id)``. An
  update for an unknown user is rejected at once (no grace period).

The worker reads its Redis and database from ``NAIVE_BROKER_URL`` and ``NAIVE_DATABASE_URL``:

    NAIVE_BROKER_URL=redis://127.0.0.1:6379/13 NAIVE_DATABASE_URL=sqlite:///naive.db \\
        PYTHONPATH=bench python -m celery -A naive worker -Q naive.events --concurrency 2

``start_workers`` does that in subprocesses; ``publish_and_wait`` times N events through.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sluice.producer.events import Event, EventKind
from sluice.rules import Reason, Status
from sluice.rules.bots import BotDetector
from sluice.rules.engine import order_id_of
from sluice.store.engine import make_engine, writing

QUEUE = "naive.events"
TASK = "naive.ingest_event"
BROKER_ENV = "NAIVE_BROKER_URL"
DATABASE_ENV = "NAIVE_DATABASE_URL"
EMAIL_OPEN_WINDOW_S = 1200

metadata = MetaData()
naive_events = Table(
    "naive_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workspace_id", String(64), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("user_id", String(255)),
    Column("payload", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "message_id", name="uq_naive_events_message"),
)
naive_outcomes = Table(
    "naive_outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workspace_id", String(64), nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", String(40)),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "message_id", name="uq_naive_outcomes_message"),
)
naive_contacts = Table(
    "naive_contacts",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("user_id", String(255), primary_key=True),
    Column("traits", JSON, nullable=False),
)


def make_app(broker_url: str) -> Celery:
    app = Celery("naive", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
    )
    return app


# The worker's app (``celery -A naive``); publishers make their own with ``make_app``.
app = make_app(os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/13"))


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url)


@cache
def _engine() -> Engine:
    return make_engine(os.environ[DATABASE_ENV])


_BOTS = BotDetector()


def _identity(event: Event) -> str | None:
    if event.user_id is not None:
        return event.user_id
    if event.email is not None:
        return event.email.lower()
    return event.anonymous_id


def _claim(event: Event) -> tuple[str, int | None, Reason] | None:
    """The Redis key this event claims, its time to live, and the reason when it is taken."""
    ws = event.workspace_id
    if event.kind is EventKind.CONFIRMATION:
        order = order_id_of(event)
        key = f"naive:order:{ws}:{order}"
        return None if order is None else (key, None, Reason.DUPLICATE_ORDER)
    if event.kind is EventKind.EMAIL_OPEN:
        user = _identity(event)
        key = f"naive:open:{ws}:{user}"
        return None if user is None else (key, EMAIL_OPEN_WINDOW_S, Reason.THROTTLED)
    return None


def decide(event: Event, client: redis.Redis) -> tuple[Status, Reason | None]:
    """The Redis-side rules: one ``SET … NX`` per confirmation or email open, none else."""
    if _BOTS.reason(event.context) is not None:
        return Status.DISCARDED, Reason.BOT
    claim = _claim(event)
    if claim is not None:
        key, ttl_s, reason = claim
        if not client.set(key, event.message_id, nx=True, ex=ttl_s):
            return Status.DISCARDED, reason
    return Status.ACCEPTED, None


def _upsert_contact(
    conn: Connection, workspace_id: str, user: str, traits: Mapping[str, Any]
) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(naive_contacts).values(
        workspace_id=workspace_id, user_id=user, traits=dict(traits)
    )
    excluded = statement.excluded
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["workspace_id", "user_id"], set_={"traits": excluded.traits}
        )
    )


def _update_contact(
    conn: Connection, workspace_id: str, user: str | None, traits: Mapping[str, Any]
) -> bool:
    """Merge traits into an existing contact (read, merge, write); False if there is none."""
    if user is None:
        return False
    where = (naive_contacts.c.workspace_id == workspace_id) & (naive_contacts.c.user_id == user)
    current = conn.execute(select(naive_contacts.c.traits).where(where)).scalar_one_or_none()
    if current is None:
        return False
    conn.execute(update(naive_contacts).where(where).values(traits={**current, **traits}))
    return True


def store(conn: Connection, event: Event, status: Status, reason: Reason | None) -> None:
    """The event's one transaction: contact, event row (when accepted), outcome row."""
    user = _identity(event)
    updating = status is Status.ACCEPTED and event.kind is EventKind.UPDATE
    if updating and not _update_contact(conn, event.workspace_id, user, event.traits):
        status, reason = Status.REJECTED, Reason.UNKNOWN_USER
    if status is Status.ACCEPTED and event.kind is EventKind.LOGIN and user is not None:
        _upsert_contact(conn, event.workspace_id, user, event.traits)
    key = {"workspace_id": event.workspace_id, "message_id": event.message_id}
    if status is Status.ACCEPTED:
        row = {
            **key,
            "kind": str(event.kind),
            "name": event.name,
            "user_id": event.user_id,
            "payload": event.model_dump(mode="json"),
            "received_at": event.received_at,
        }
        _insert(conn, naive_events, [row])
    outcome = {**key, "status": str(status), "reason": reason, "decided_at": datetime.now(UTC)}
    _insert(conn, naive_outcomes, [outcome])


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """What a team writes first: the ORM's insert, skipping rows whose key exists."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(table).on_conflict_do_nothing(), rows)


def ingest_event(payload: dict[str, Any]) -> None:
    event = Event.model_validate(payload)
    status, reason = decide(event, _redis())
    with writing(_engine()) as conn:
        store(conn, event, status, reason)


ingest_event_task = app.task(name=TASK, acks_late=True, ignore_result=True)(ingest_event)


def create_tables(engine: Engine) -> None:
    """The naive tables, empty (dropped first if a previous run left them)."""
    metadata.drop_all(engine)
    metadata.create_all(engine)


def seed_contacts(engine: Engine, workspace_id: str, users: Sequence[str]) -> None:
    """Contacts that exist before the timed run (Sluice's run gets them from logins)."""
    rows = [{"workspace_id": workspace_id, "user_id": user, "traits": {}} for user in users]
    with writing(engine) as conn:
        _insert(conn, naive_contacts, rows)


def start_workers(
    broker_url: str, database_url: str, count: int, concurrency: int
) -> list[subprocess.Popen[bytes]]:
    """``count`` naive Celery workers (prefork, ``concurrency`` processes each)."""
    here = str(Path(__file__).resolve().parent)
    env = {
        **os.environ,
        BROKER_ENV: broker_url,
        DATABASE_ENV: database_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "celery", "-A", "naive", "worker", f"--queues={QUEUE}"]
    return [
        subprocess.Popen(
            [
                *command,
                f"--concurrency={concurrency}",
                "--loglevel=WARNING",
                f"--hostname=naive{i}@%h",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


def outcome_count(engine: Engine, workspace_id: str) -> int:
    query = (
        select(func.count())
        .select_from(naive_outcomes)
        .where(naive_outcomes.c.workspace_id == workspace_id)
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def publish_and_wait(
    broker_url: str,
    engine: Engine,
    workspace_id: str,
    events: Sequence[Mapping[str, Any]],
    timeout_s: float,
) -> float:
    """Send each event as its own task, wait until each has its outcome row; events/s.

    The clock runs from the first send to the last outcome, as Sluice's does in
    ``bench/throughput.py``. Each event is validated into the canonical model first, as
    ``EventClient`` does."""
    publisher = make_app(broker_url)
    baseline = outcome_count(engine, workspace_id)
    started = time.perf_counter()
    try:
        for fields in events:
            event = Event.model_validate({**fields, "workspace_id": workspace_id})
            publisher.send_task(TASK, args=[event.model_dump(mode="json")], queue=QUEUE)
    finally:
        publisher.close()
    deadline = started + timeout_s
    while (done := outcome_count(engine, workspace_id) - baseline) < len(events):
        if time.perf_counter() > deadline:
            raise SystemExit(f"naive: timed out with {done}/{len(events)} outcomes")
        time.sleep(0.05)
    return len(events) / (time.perf_counter() - started)
