"""Decide a batch and record it: the one domain step behind the ingest task."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sluice.producer.envelope import InvalidEvent, decode_envelope
from sluice.producer.events import Event
from sluice.rules import Reason, Verdict
from sluice.rules.decisions import Decision
from sluice.rules.engine import RulePolicy, RulesEngine
from sluice.store.automations import Pending
from sluice.worker.failures import is_unstorable
from sluice.worker.ingest.store import EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestReport:
    batch_id: str
    decisions: list[Decision]
    unkeyed: list[InvalidEvent] = field(default_factory=list)
    deferred: list[Decision] = field(default_factory=list)  # decide again at ``retry_at``
    triggers: int = 0  # new triggers to deliver: the deliverers are woken for them


def ingest(
    payload: Any, store: EventStore, rules: RulesEngine, default_policy: RulePolicy, now: datetime
) -> IngestReport:
    """Decode, decide and persist one queued batch (one transaction for its writes).

    Raises ``PoisonEnvelopeError`` when the payload is not an envelope. Events that fail
    validation are rejected as ``invalid``; an invalid event without a usable workspace or
    message id cannot have an outcome and is returned in ``unkeyed`` for the dead-letter
    table. Events waiting for their user are returned in ``deferred``, undecided.
    """
    batch = decode_envelope(payload)
    events = [item for item in batch.items if isinstance(item, Event)]
    policies = store.workspace_policies({e.workspace_id for e in events}, default_policy)
    decisions: list[Decision] = []
    unkeyed: list[InvalidEvent] = []
    for item in batch.items:
        if isinstance(item, InvalidEvent):
            if item.workspace_id is None or item.message_id is None:
                unkeyed.append(item)
            else:
                verdict = Verdict.reject(Reason.INVALID, item.error)
                decisions.append(
                    Decision(item.workspace_id, item.message_id, verdict, raw=item.raw)
                )
        elif item.workspace_id not in policies:
            verdict = Verdict.reject(
                Reason.INVALID, f"workspace_id: unknown workspace {item.workspace_id!r}"
            )
            decisions.append(Decision(item.workspace_id, item.message_id, verdict, event=item))
    decided = rules.decide(
        batch.batch_id,
        [e for e in events if e.workspace_id in policies],
        ledger=store,
        users=store,
        policies=policies,
        now=now,
    )
    decisions += [d for d in decided if not d.deferred]
    try:
        recorded = store.record_batch(batch.batch_id, decisions, now)
        final, triggers = recorded.decisions, recorded.triggers
    except Exception as exc:
        if not is_unstorable(exc):
            raise
        log.warning(
            "batch %s: the database refused a row (%s); storing event by event",
            batch.batch_id,
            type(exc).__name__,
        )
        alone = [_record_alone(store, rules, batch.batch_id, d, now) for d in decisions]
        final = [d for d, _ in alone]
        triggers = [t for _, some in alone for t in some]
    for decision in final:
        if decision.verdict.reason is not None and not decision.replayed:
            log.info(
                "event %s %s: %s (%s)",
                decision.message_id,
                decision.verdict.status,
                decision.verdict.reason,
                decision.verdict.detail,
                extra={"message_id": decision.message_id, "workspace_id": decision.workspace_id},
            )
    deferred = [d for d in decided if d.deferred]
    return IngestReport(batch.batch_id, final, unkeyed, deferred, len(set(triggers)))


def _record_alone(
    store: EventStore, rules: RulesEngine, batch_id: str, decision: Decision, now: datetime
) -> tuple[Decision, list[Pending]]:
    """Store one decision; if the database refuses it, reject the event instead, and give up
    the claims its decision made (a later confirmation of its order is not a duplicate)."""
    try:
        recorded = store.record_batch(batch_id, [decision], now)
        return recorded.decisions[0], recorded.triggers
    except Exception as exc:
        if not is_unstorable(exc):
            raise
        cause = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
        rejected = Decision(
            decision.workspace_id,
            decision.message_id,
            Verdict.reject(Reason.INVALID, f"the database cannot store this event: {cause}"),
            event=decision.event,
            raw=decision.raw,
        )
        store.record_outcomes_only(batch_id, [rejected], now)
        rules.release([decision])
        return rejected, []
