"""The one way a batch goes on the queue (``Publisher.send``): journaled, published, its
events marked as queued. New events (``Publisher.publish``: the gateway, ``EventClient``),
a deferred part, a replayed dead letter and a lost batch from the journal all take it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence

import redis

from sluice.producer.envelope import MAX_ENVELOPE_EVENTS, Envelope, Outgoing
from sluice.producer.errors import PublishError
from sluice.producer.events import Event
from sluice.producer.journal import BatchJournal
from sluice.producer.pending import PendingMarks
from sluice.producer.transport import BrokerTransport, Transport, is_redis_url

DEFAULT_BATCH_EVENTS = 500


class Publisher:
    def __init__(
        self,
        transport: Transport,
        *,
        marks: PendingMarks | None = None,
        journal: BatchJournal | None = None,
        batch_events: int = DEFAULT_BATCH_EVENTS,
    ) -> None:
        if not 1 <= batch_events <= MAX_ENVELOPE_EVENTS:
            raise ValueError(f"batch_events must be within 1..{MAX_ENVELOPE_EVENTS}")
        self.transport = transport
        self.marks = marks
        self.journal = journal
        self._batch_events = batch_events

    def publish(self, events: Sequence[Event]) -> list[str]:
        """Queue new events; return their message ids in order.

        Raises ``PublishError`` (with the ids already queued) if the queue refuses a chunk;
        the refused chunk is not published later behind the caller's back (it sends again).
        """
        queued: list[str] = []
        for start in range(0, len(events), self._batch_events):
            chunk = list(events[start : start + self._batch_events])
            try:
                self.send(Envelope.of(chunk), forget_if_refused=True)
            except PublishError as exc:
                exc.queued_message_ids = queued
                raise
            self.mark(chunk)
            queued.extend(event.message_id for event in chunk)
        return queued

    def send(
        self,
        envelope: Outgoing,
        *,
        once_journaled: Callable[[], object] | None = None,
        forget_if_refused: bool = False,
    ) -> None:
        """Put one envelope on the queue, in this order:

        1. with a journal, record it (``sluice.producer.journal``; its grace period starts
           when it is due); a batch from the journal is there already (the sweep restarts
           the grace periods of those it published);
        2. ``once_journaled()``, what must happen before a worker may take the batch (a
           dead letter's claim); if it raises, nothing is published (the caller knows
           whether the journal entry is its own to ``forget``);
        3. publish it (then ``mark`` its events as queued, where the caller has them).

        Raises ``PublishError`` when the journal or the queue refuses it. A batch the queue
        refused stays in the journal, and the journal sweep publishes it, unless
        ``forget_if_refused``."""
        if self.journal is not None and not envelope.journaled:
            due = time.time() + envelope.delay_s if envelope.delay_s > 0 else None
            self.journal.record(envelope.batch_id, envelope.wire, not_before=due)
        if once_journaled is not None:
            once_journaled()
        try:
            self.transport.publish(envelope)
        except PublishError:
            if forget_if_refused and not envelope.journaled:
                self.forget(envelope.batch_id)
            raise

    def mark(self, events: Iterable[Event]) -> None:
        """Mark published events as queued (a failure is logged, not raised)."""
        if self.marks is not None:
            chosen = list(events)
            if chosen:
                self.marks.mark(chosen)

    def forget(self, batch_id: str) -> None:
        """Drop a batch from the journal, if Redis lets us; else the sweep publishes it
        again later, which is harmless (its second delivery replays the first verdicts)."""
        if self.journal is not None:
            with contextlib.suppress(redis.RedisError):
                self.journal.forget([batch_id])

    def close(self) -> None:
        self.transport.close()


def open_publisher(
    broker_url: str | None,
    client: redis.Redis | None,
    *,
    transport: Transport | None = None,
    timeout_s: float = 5.0,
    visibility_timeout_s: int = 900,
    batch_events: int = DEFAULT_BATCH_EVENTS,
    pending_ttl_s: int = 86_400,
) -> Publisher:
    """The publisher every producer uses: to ``transport`` (default: the broker at
    ``broker_url``), marking events as queued in Redis (``client``, when given) and, with a
    Redis broker (the one that can lose a message in flight, docs/reliability.md #1),
    journaling each batch there too."""
    if transport is None:
        if broker_url is None:
            raise ValueError("a publisher needs a broker URL or a transport")
        transport = BrokerTransport(
            broker_url, timeout_s=timeout_s, visibility_timeout_s=visibility_timeout_s
        )
    marks = journal = None
    if client is not None:
        marks = PendingMarks(client, ttl_s=pending_ttl_s)
        if is_redis_url(broker_url):
            journal = BatchJournal(client, timeout_s=timeout_s)
    return Publisher(transport, marks=marks, journal=journal, batch_events=batch_events)
