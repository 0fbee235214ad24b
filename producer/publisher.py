"""Splits validated events into envelopes, publishes them, and marks them as queued."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import redis

from sluice.producer.envelope import MAX_ENVELOPE_EVENTS, Envelope
from sluice.producer.errors import PublishError
from sluice.producer.events import Event
from sluice.producer.journal import BatchJournal
from sluice.producer.pending import PendingMarks
from sluice.producer.transport import Transport

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
        self._marks = marks
        self._journal = journal
        self._batch_events = batch_events

    def publish(self, events: Sequence[Event]) -> list[str]:
        """Queue the events; return their message ids in order.

        With a journal, each envelope is journaled before it is published
        (``sluice.producer.journal``). Raises ``PublishError`` (with the ids already queued)
        if the queue refuses a chunk.
        """
        queued: list[str] = []
        for start in range(0, len(events), self._batch_events):
            chunk = list(events[start : start + self._batch_events])
            try:
                self._publish(Envelope.of(chunk))
            except PublishError as exc:
                exc.queued_message_ids = queued
                raise
            if self._marks is not None:
                self._marks.mark(chunk)
            queued.extend(event.message_id for event in chunk)
        return queued

    def _publish(self, envelope: Envelope) -> None:
        if self._journal is None:
            self.transport.publish(envelope)
            return
        self._journal.record(envelope.batch_id, envelope.wire)
        try:
            self.transport.publish(envelope)
        except PublishError:
            with contextlib.suppress(redis.RedisError):  # else it is published late: harmless
                self._journal.forget([envelope.batch_id])
            raise

    def close(self) -> None:
        self.transport.close()
