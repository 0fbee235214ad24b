"""How the ingest task classifies what happens to a batch (real Redis and database; the
Celery task object is replaced by its request data, which is all the handler reads)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import sqlalchemy.exc
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from sqlalchemy import Engine, select, text

from sluice.producer.envelope import Envelope
from sluice.producer.events import Event
from sluice.store.schema import dead_letters, outcomes
from sluice.store.workspaces import create_workspace
from sluice.worker.runtime import Runtime
from sluice.worker.tasks import deferred_batch_id, handle_batch


@dataclass
class Request:
    id: str
    retries: int = 0


@dataclass
class FakeTask:
    request: Request
    retried_with: list[dict[str, Any]] = field(default_factory=list)

    def retry(self, **kwargs: Any) -> Retry:
        self.retried_with.append(kwargs)
        return Retry()


def envelope_for(engine: Engine) -> dict[str, Any]:
    workspace = create_workspace(engine, "task-test")
    envelope = Envelope(
        events=[Event(workspace_id=workspace.workspace_id, kind="custom", name="E", user_id="u")]
    )
    wire: dict[str, Any] = envelope.model_dump(mode="json")
    return wire


def letters(engine: Engine, batch_id: str) -> list[str]:
    query = select(dead_letters.c.reason).where(dead_letters.c.batch_id == batch_id)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def test_a_batch_that_keeps_coming_back_is_dead_lettered(runtime: Runtime, engine: Engine) -> None:
    wire = envelope_for(engine)
    task = FakeTask(Request(id=wire["batch_id"]))
    # Deliveries 1 and 2 process normally (redeliveries are idempotent); the third is over
    # the cap, as when every attempt kills the worker before it acks.
    for _ in range(3):
        handle_batch(task, runtime, wire)  # type: ignore[arg-type]
    assert letters(engine, wire["batch_id"]) == ["delivered 3 times without finishing"]


def test_a_retry_is_counted_apart_from_crash_redeliveries(runtime: Runtime, engine: Engine) -> None:
    wire = envelope_for(engine)
    for retries in range(4):
        handle_batch(FakeTask(Request(id=wire["batch_id"], retries=retries)), runtime, wire)  # type: ignore[arg-type]
    assert letters(engine, wire["batch_id"]) == []


def test_a_database_outage_retries_instead_of_dropping(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = envelope_for(engine)

    def database_down(*_args: object, **_kwargs: object) -> None:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(runtime.store, "record_batch", database_down)
    task = FakeTask(Request(id=wire["batch_id"]))
    with pytest.raises(Retry):
        handle_batch(task, runtime, wire)  # type: ignore[arg-type]
    assert len(task.retried_with) == 1
    assert 0 <= task.retried_with[0]["countdown"] <= 1  # first retry: up to 2**0 s
    assert letters(engine, wire["batch_id"]) == []


def test_an_unexpected_error_dead_letters_the_batch_and_rejects_its_events(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = envelope_for(engine)

    def bug(*_args: object, **_kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(runtime.store, "record_batch", bug)
    handle_batch(FakeTask(Request(id=wire["batch_id"])), runtime, wire)  # type: ignore[arg-type]
    query = select(dead_letters).where(dead_letters.c.batch_id == wire["batch_id"])
    with engine.connect() as conn:
        letter = conn.execute(query).one()
        stored = conn.execute(select(outcomes).where(outcomes.c.batch_id == wire["batch_id"])).all()
    assert letter.reason == "unexpected error: KeyError"
    assert "surprise" in letter.detail
    assert [(o.status, o.reason) for o in stored] == [("rejected", "invalid")]
    assert stored[0].detail == (
        f"not processed: unexpected error: KeyError; dead letter {letter.id} "
        f"(sluice dlq show {letter.id})"
    )


def test_a_row_the_database_refuses_rejects_that_event_only(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = create_workspace(engine, "refused-row")
    names = ["fine", "refused", "also fine"]
    envelope = Envelope(
        events=[
            Event(workspace_id=workspace.workspace_id, kind="custom", name=name, user_id="u")
            for name in names
        ]
    )
    wire = envelope.model_dump(mode="json")
    real_record = runtime.store.record_batch

    def refuse_one(batch_id: str, decisions: Any, now: Any) -> Any:
        if any(d.event is not None and d.event.name == "refused" for d in decisions):
            raise sqlalchemy.exc.DataError("INSERT", {}, Exception("value out of range"))
        return real_record(batch_id, decisions, now)

    monkeypatch.setattr(runtime.store, "record_batch", refuse_one)
    handle_batch(FakeTask(Request(id=wire["batch_id"])), runtime, wire)  # type: ignore[arg-type]
    query = select(outcomes.c.name, outcomes.c.status, outcomes.c.reason, outcomes.c.detail).where(
        outcomes.c.batch_id == wire["batch_id"]
    )
    with engine.connect() as conn:
        rows = {row.name: row for row in conn.execute(query)}
    assert {name: (rows[name].status, rows[name].reason) for name in names} == {
        "fine": ("accepted", None),
        "refused": ("rejected", "invalid"),
        "also fine": ("accepted", None),
    }
    assert "value out of range" in rows["refused"].detail
    assert letters(engine, wire["batch_id"]) == []


def test_a_retry_that_cannot_be_published_requeues_instead_of_dropping(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = envelope_for(engine)

    def database_down(*_args: object, **_kwargs: object) -> None:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    class BrokerDownTask(FakeTask):
        def retry(self, **kwargs: Any) -> Retry:  # what Celery does when the publish fails
            raise Reject(ConnectionError("broker down"), requeue=False)

    monkeypatch.setattr(runtime.store, "record_batch", database_down)
    with pytest.raises(Reject) as caught:
        handle_batch(BrokerDownTask(Request(id=wire["batch_id"])), runtime, wire)  # type: ignore[arg-type]
    assert caught.value.requeue is True


def test_a_batch_over_its_time_limit_is_requeued_and_counted(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = envelope_for(engine)

    def slow(*_args: object, **_kwargs: object) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(runtime.store, "record_batch", slow)
    task = FakeTask(Request(id=wire["batch_id"]))
    for _ in range(2):  # max_deliveries=2
        with pytest.raises(Reject) as caught:
            handle_batch(task, runtime, wire)  # type: ignore[arg-type]
        assert caught.value.requeue is True
    handle_batch(task, runtime, wire)  # type: ignore[arg-type]
    assert letters(engine, wire["batch_id"]) == ["delivered 3 times without finishing"]


def test_an_error_with_nowhere_to_go_requeues_the_message(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = envelope_for(engine)

    def bug(*_args: object, **_kwargs: object) -> None:
        raise KeyError("surprise")

    def dead_letters_broken(**_kwargs: object) -> None:
        raise RuntimeError("dead-letter table unavailable")

    monkeypatch.setattr(runtime.store, "record_batch", bug)
    monkeypatch.setattr(runtime.store, "dead_letter", dead_letters_broken)
    with pytest.raises(Reject) as caught:
        handle_batch(FakeTask(Request(id=wire["batch_id"])), runtime, wire)  # type: ignore[arg-type]
    assert caught.value.requeue is True


def test_backoff_stays_below_the_visibility_timeout() -> None:
    from sluice.worker.tasks import batch_retry_delay_s

    assert max(batch_retry_delay_s(retries, 900) for retries in range(40)) <= 60
    assert max(batch_retry_delay_s(retries, 40) for retries in range(40)) <= 10
    assert batch_retry_delay_s(5000, 900) <= 60  # days into an outage: still a number


def test_a_retried_or_requeued_batch_restarts_its_journal_clock(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its message goes to the back of the queue: the journal sweep's backlog rule must see
    it as queued from now, not from when a worker first took it."""
    wire = envelope_for(engine)
    long_ago = time.time() - 3600
    runtime.journal.record(wire["batch_id"], orjson.dumps(wire), not_before=long_ago)

    def database_down(*_args: object, **_kwargs: object) -> None:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(runtime.store, "record_batch", database_down)
    before = time.time()
    with pytest.raises(Retry):
        handle_batch(FakeTask(Request(id=wire["batch_id"])), runtime, wire)  # type: ignore[arg-type]
    seen = runtime.journal.last_seen(wire["batch_id"])
    assert seen is not None and seen >= before


def test_a_poison_envelope_leaves_the_journal(runtime: Runtime) -> None:
    poison = {"batch_id": "b-poison", "v": 99, "events": [{}]}
    runtime.journal.record("b-poison", orjson.dumps(poison))
    handle_batch(FakeTask(Request(id="b-poison")), runtime, poison)  # type: ignore[arg-type]
    assert runtime.journal.last_seen("b-poison") is None
    assert runtime.journal.size() == 0


def test_a_batch_deferred_again_and_again_keeps_a_short_id() -> None:
    first = deferred_batch_id("0f" * 16)
    assert first == "0f" * 16 + ".d"
    chain = [first]
    for _ in range(40):
        chain.append(deferred_batch_id(chain[-1]))
    assert chain[1:3] == ["0f" * 16 + ".d2", "0f" * 16 + ".d3"]
    assert len(set(chain)) == len(chain)  # each deferral its own batch
    assert max(map(len, chain)) <= 64
    assert deferred_batch_id(chain[-1]) == deferred_batch_id(chain[-1])  # a redelivery


@contextmanager
def database_refusing(engine: Engine, message_id: str) -> Iterator[None]:
    """The database refuses the event row of one message (a constraint), as it refuses a
    value it cannot hold."""
    if engine.dialect.name == "sqlite":
        make = (
            f"CREATE TRIGGER refuse_one BEFORE INSERT ON events WHEN NEW.message_id = "
            f"'{message_id}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        drop = "DROP TRIGGER refuse_one"
    else:
        make = f"ALTER TABLE events ADD CONSTRAINT refuse_one CHECK (message_id <> '{message_id}')"
        drop = "ALTER TABLE events DROP CONSTRAINT refuse_one"
    with engine.begin() as conn:
        conn.execute(text(make))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(drop))


def test_a_confirmation_the_database_refuses_leaves_no_claim_on_its_order(
    runtime: Runtime, engine: Engine
) -> None:
    workspace = create_workspace(engine, "refused-order").workspace_id
    order = f"ord-{uuid.uuid4().hex}"
    refused, later = f"refused-{uuid.uuid4().hex}", f"later-{uuid.uuid4().hex}"

    def confirmation(message_id: str) -> dict[str, Any]:
        event = Event(
            workspace_id=workspace,
            message_id=message_id,
            kind="confirmation",
            name="Order Completed",
            user_id="buyer",
            properties={"orderId": order},
        )
        wire: dict[str, Any] = Envelope(events=[event]).model_dump(mode="json")
        return wire

    def verdict(message_id: str) -> tuple[str, str | None]:
        query = select(outcomes.c.status, outcomes.c.reason).where(
            outcomes.c.workspace_id == workspace, outcomes.c.message_id == message_id
        )
        with engine.connect() as conn:
            status, reason = conn.execute(query).one()
        return status, reason

    user = Envelope(
        events=[Event(workspace_id=workspace, kind="update", name="Identify", user_id="buyer")]
    ).model_dump(mode="json")
    handle_batch(FakeTask(Request(id=user["batch_id"])), runtime, user)  # type: ignore[arg-type]
    first = confirmation(refused)
    with database_refusing(engine, refused):
        handle_batch(FakeTask(Request(id=first["batch_id"])), runtime, first)  # type: ignore[arg-type]
    assert verdict(refused) == ("rejected", "invalid")

    second = confirmation(later)
    handle_batch(FakeTask(Request(id=second["batch_id"])), runtime, second)  # type: ignore[arg-type]
    assert verdict(later) == ("accepted", None)
