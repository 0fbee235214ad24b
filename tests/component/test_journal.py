"""The batch journal (docs/reliability.md #1): every batch published through a Redis broker
is journaled first, and the sweep publishes again those nobody touched within the grace
period, never one that may still wait in the queue."""

from __future__ import annotations

import base64
import time
import zlib
from collections.abc import Iterator

import orjson
import pytest
import redis
from celery import Celery

from sluice.producer import EventClient, MemoryTransport, PublishError, keys
from sluice.producer.envelope import Envelope, task_message
from sluice.producer.events import Event, EventKind, utc_now
from sluice.producer.journal import BatchJournal
from sluice.producer.publisher import Publisher
from sluice.producer.transport import BrokerTransport
from sluice.producer.wire import INGEST_QUEUE, register_serializer
from sluice.worker.ingest.resend import resend_lost_batches

GRACE_S = 60.0


@pytest.fixture
def client(isolated_redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(isolated_redis_url)
    yield connection
    connection.close()


@pytest.fixture
def app(isolated_redis_url: str) -> Iterator[Celery]:
    register_serializer()
    celery = Celery("journal-test", broker=isolated_redis_url, set_as_current=False)
    yield celery
    celery.close()


@pytest.fixture
def transport(isolated_redis_url: str) -> Iterator[BrokerTransport]:
    broker = BrokerTransport(isolated_redis_url)
    yield broker
    broker.close()


def envelope(batch_id: str) -> Envelope:
    event = Event(
        workspace_id="ws",
        kind=EventKind.CUSTOM,
        name="Page Viewed",
        user_id="u1",
        received_at=utc_now(),
    )
    return Envelope(batch_id=batch_id, events=[event])


def queued_batch_ids(client: redis.Redis) -> list[str]:
    """Oldest first, as the workers take them."""
    return [
        orjson.loads(raw)["headers"]["id"] for raw in reversed(client.lrange(INGEST_QUEUE, 0, -1))
    ]


def test_the_client_journals_each_batch_before_it_is_queued(
    isolated_redis_url: str, client: redis.Redis
) -> None:
    with EventClient("ws", broker_url=isolated_redis_url, batch_events=2) as sender:
        sender.send_batch([{"kind": "custom", "name": "E"}] * 3)
    batch_ids = queued_batch_ids(client)
    assert len(batch_ids) == 2
    journaled = client.hgetall(keys.journal())
    assert sorted(journaled) == sorted(batch_id.encode() for batch_id in batch_ids)
    for batch_id in batch_ids:
        body = journaled[batch_id.encode()]
        assert isinstance(body, bytes)
        wire = orjson.loads(zlib.decompress(body))
        assert wire["batch_id"] == batch_id
        assert client.zscore(keys.journal_seen(), batch_id) == pytest.approx(time.time(), abs=30)


def test_a_batch_the_queue_refused_is_not_left_in_the_journal(client: redis.Redis) -> None:
    transport = MemoryTransport()
    transport.fail_with = PublishError("the queue is down")
    publisher = Publisher(transport, journal=BatchJournal(client))
    with pytest.raises(PublishError):
        publisher.publish(envelope("b-refused").events)
    assert client.hlen(keys.journal()) == 0
    assert client.zcard(keys.journal_seen()) == 0


def test_the_sweep_publishes_untouched_batches_again_once_per_interval(
    transport: BrokerTransport, client: redis.Redis
) -> None:
    journal = BatchJournal(client)
    now = time.time()
    for batch_id, age_s in (("b-old", 300), ("b-older", 600), ("b-young", 5)):
        journal.record(batch_id, envelope(batch_id).wire, not_before=now - age_s)
    resent = resend_lost_batches(
        Publisher(transport, journal=journal), client, grace_s=GRACE_S, every_s=30
    )
    assert resent == ["b-older", "b-old"]
    assert queued_batch_ids(client) == ["b-older", "b-old"]
    oldest = client.lindex(INGEST_QUEUE, -1)
    assert isinstance(oldest, bytes)
    message = orjson.loads(oldest)
    body = base64.b64decode(message["body"])  # kombu's Redis transport encodes bodies
    assert orjson.loads(body)[0][0]["batch_id"] == "b-older"  # the envelope as it was
    # Another worker in the same interval does nothing; the next interval finds them touched.
    assert (
        resend_lost_batches(
            Publisher(transport, journal=journal), client, grace_s=GRACE_S, every_s=30
        )
        == []
    )
    client.delete(keys.journal_sweep_lock())
    assert (
        resend_lost_batches(
            Publisher(transport, journal=journal), client, grace_s=GRACE_S, every_s=30
        )
        == []
    )
    assert client.llen(INGEST_QUEUE) == 2
    journal.forget(["b-older", "b-old", "b-young"])
    assert client.hlen(keys.journal()) == client.zcard(keys.journal_seen()) == 0


def test_during_a_backlog_only_batches_older_than_the_queue_are_published_again(
    app: Celery, transport: BrokerTransport, client: redis.Redis
) -> None:
    journal = BatchJournal(client)
    now = time.time()
    for batch_id, age_s in (("b-lost", 900), ("b-waiting", 600), ("b-behind-it", 300)):
        journal.record(batch_id, envelope(batch_id).wire, not_before=now - age_s)
    # Workers are ten minutes behind: b-waiting and b-behind-it are still in the queue.
    for batch_id in ("b-waiting", "b-behind-it"):
        app.send_task(**task_message(batch_id, envelope(batch_id).wire))
    assert resend_lost_batches(
        Publisher(transport, journal=journal), client, grace_s=GRACE_S, every_s=30
    ) == ["b-lost"]
    assert queued_batch_ids(client) == ["b-waiting", "b-behind-it", "b-lost"]


def test_without_a_redis_broker_there_is_nothing_to_sweep(
    transport: BrokerTransport, client: redis.Redis
) -> None:
    journal = BatchJournal(client)
    journal.record("b-x", envelope("b-x").wire, not_before=time.time() - 3600)
    assert (
        resend_lost_batches(
            Publisher(transport, journal=journal), None, grace_s=GRACE_S, every_s=30
        )
        == []
    )
    assert client.llen(INGEST_QUEUE) == 0
