"""EventClient: validation before queueing, batching, honest failures."""

from __future__ import annotations

import threading

import pytest
import redis

from sluice.cli.embedded_redis import free_port
from sluice.producer import (
    Event,
    EventClient,
    InvalidEventError,
    MemoryTransport,
    PublishError,
    UnknownWorkspaceError,
    keys,
)
from sluice.producer.wire import INGEST_QUEUE
from sluice.producer.workspace_ids import announce, forget


def test_send_returns_message_ids_and_keeps_given_ones() -> None:
    transport = MemoryTransport()
    client = EventClient("ws", transport=transport)
    first = client.send({"kind": "custom", "name": "E", "message_id": "mine"})
    rest = client.send_batch([{"kind": "custom", "name": "E"}] * 3)
    assert first == "mine"
    assert len(set(rest)) == 3
    queued = [event for envelope in transport.envelopes for event in envelope.events]
    assert [event.message_id for event in queued] == [first, *rest]
    assert {event.workspace_id for event in queued} == {"ws"}


def test_an_invalid_event_queues_nothing_of_its_call() -> None:
    transport = MemoryTransport()
    client = EventClient("ws", transport=transport)
    with pytest.raises(InvalidEventError, match="event 1: name"):
        client.send_batch([{"kind": "custom", "name": "ok"}, {"kind": "custom"}])
    assert transport.envelopes == []


def test_an_event_of_another_workspace_is_refused() -> None:
    client = EventClient("ws", transport=MemoryTransport())
    with pytest.raises(InvalidEventError):
        client.send(Event(workspace_id="other", kind="custom", name="E"))


def test_large_calls_are_split_into_envelopes() -> None:
    transport = MemoryTransport()
    EventClient("ws", transport=transport, batch_events=100).send_batch(
        [{"kind": "custom", "name": "E"}] * 250
    )
    assert [len(envelope.events) for envelope in transport.envelopes] == [100, 100, 50]


def test_a_failure_reports_which_events_were_queued() -> None:
    class FailSecond(MemoryTransport):
        def publish(self, envelope):  # type: ignore[no-untyped-def]
            if self.envelopes:
                raise PublishError("down")
            super().publish(envelope)

    transport = FailSecond()
    with pytest.raises(PublishError) as caught:
        EventClient("ws", transport=transport, batch_events=2).send_batch(
            [{"kind": "custom", "name": "E"}] * 5
        )
    assert caught.value.queued_message_ids == [e.message_id for e in transport.envelopes[0].events]


def test_events_are_in_redis_when_send_returns(isolated_redis_url: str) -> None:
    with EventClient("ws", broker_url=isolated_redis_url) as client:
        message_id = client.send({"kind": "custom", "name": "E"})
    queue = redis.Redis.from_url(isolated_redis_url)
    assert queue.llen(INGEST_QUEUE) == 1
    assert queue.exists(keys.pending("ws", message_id))


def test_an_unreachable_broker_raises_instead_of_hanging() -> None:
    client = EventClient("ws", broker_url=f"redis://127.0.0.1:{free_port()}/0", timeout_s=1)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            client.send({"kind": "custom", "name": "E"})
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(timeout=30)  # generous: this checks "bounded", not "fast"
    assert not thread.is_alive(), "send() hung on an unreachable broker"
    assert len(outcome) == 1 and isinstance(outcome[0], PublishError)
    assert outcome[0].queued_message_ids == []


def test_an_event_that_cannot_be_stored_as_json_is_an_invalid_event_error() -> None:
    # Found by fuzzing: 256 levels of nesting raised a bare TypeError from the encoder.
    nested: dict[str, object] = {}
    inner = nested
    for _ in range(256):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    transport = MemoryTransport()
    client = EventClient("ws", transport=transport)
    for properties in (nested, {"tags": {"a", "b"}}):
        with pytest.raises(InvalidEventError, match="properties"):
            client.send(
                {"kind": "custom", "name": "Deep", "user_id": "u", "properties": properties}
            )
    assert transport.envelopes == []


def test_an_order_id_longer_than_the_database_holds_raises() -> None:
    transport = MemoryTransport()
    client = EventClient("ws", transport=transport)
    confirmation = {"kind": "confirmation", "name": "Order Completed", "user_id": "u"}
    with pytest.raises(InvalidEventError, match=r"properties\.orderId has 300 characters"):
        client.send({**confirmation, "properties": {"orderId": "o" * 300}})
    with pytest.raises(InvalidEventError, match="order_id"):
        client.send({**confirmation, "order_id": "o" * 300})
    assert transport.envelopes == []


def test_an_unknown_workspace_is_refused_once_the_known_ids_exist(isolated_redis_url: str) -> None:
    queue = redis.Redis.from_url(isolated_redis_url)
    # No known ids written yet (workers of an older release): sent as before.
    with EventClient("ws-old", broker_url=isolated_redis_url) as client:
        client.send({"kind": "custom", "name": "E"})
    assert queue.llen(INGEST_QUEUE) == 1
    announce(queue, ["ws-known"])
    with EventClient("ws-typo", broker_url=isolated_redis_url) as client:
        for _ in range(2):  # refused every time, queueing nothing
            with pytest.raises(UnknownWorkspaceError, match="ws-typo"):
                client.send({"kind": "custom", "name": "E"})
    assert queue.llen(INGEST_QUEUE) == 1
    with EventClient("ws-known", broker_url=isolated_redis_url) as client:
        client.send({"kind": "custom", "name": "E"})
        forget(queue, "ws-known")  # the answer is kept for the client's life
        client.send({"kind": "custom", "name": "E"})
    assert queue.llen(INGEST_QUEUE) == 3
    with (
        EventClient("ws-known", broker_url=isolated_redis_url) as client,
        pytest.raises(UnknownWorkspaceError),
    ):
        client.send({"kind": "custom", "name": "E"})
    # The marker member is no workspace id.
    with EventClient("", broker_url=isolated_redis_url) as client, pytest.raises(InvalidEventError):
        client.send({"kind": "custom", "name": "E"})
