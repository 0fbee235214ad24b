"""Decide a batch and record it: the one domain step behind the ingest task."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from producer.envelope import InvalidEvent, decode_envelope
from producer.events import Event
from rules import Reason, Status, Verdict
from worker.store import Decision, EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestReport:
    batch_id: str
    decisions: list[Decision]
    unkeyed: list[InvalidEvent]

    def count(self, status: Status) -> int:
        return sum(1 for d in self.decisions if d.verdict.status is status)


def ingest(payload: Any, store: EventStore, now: datetime) -> IngestReport:
    """Decode, decide and persist one queued batch in one transaction.

    Raises ``PoisonEnvelopeError`` when the payload is not an envelope. Events that fail
    validation are rejected as ``invalid``; an invalid event without a usable workspace or
    message id cannot have an outcome and is returned in ``unkeyed`` for the dead-letter table.
    """
    batch = decode_envelope(payload)
    known = store.existing_workspaces(
        item.workspace_id for item in batch.items if isinstance(item, Event)
    )
    decisions: list[Decision] = []
    unkeyed: list[InvalidEvent] = []
    for item in batch.items:
        if isinstance(item, InvalidEvent):
            if item.workspace_id is None or item.message_id is None:
                unkeyed.append(item)
                continue
            verdict = Verdict.reject(Reason.INVALID, item.error)
            decisions.append(Decision(item.workspace_id, item.message_id, verdict, raw=item.raw))
        else:
            decisions.append(
                Decision(item.workspace_id, item.message_id, _decide(item, known), event=item)
            )
    store.record_batch(batch.batch_id, decisions, now)
    for decision in decisions:
        if decision.verdict.status is not Status.ACCEPTED:
            log.info(
                "event %s %s: %s (%s)",
                decision.message_id,
                decision.verdict.status,
                decision.verdict.reason,
                decision.verdict.detail,
            )
    return IngestReport(batch.batch_id, decisions, unkeyed)


def _decide(event: Event, known_workspaces: set[str]) -> Verdict:
    if event.workspace_id not in known_workspaces:
        return Verdict.reject(
            Reason.INVALID, f"workspace_id: unknown workspace {event.workspace_id!r}"
        )
    return Verdict.accept()
