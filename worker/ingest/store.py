"""Persistence of decided batches (one transaction each), and the lookups the rules read:
prior outcomes (the message ledger), existing users, workspace policies."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from sluice.producer.envelope import InvalidEvent
from sluice.producer.events import MAX_MESSAGE_ID_CHARS, Event
from sluice.rules import Reason, Status, Verdict
from sluice.rules.decisions import Decision
from sluice.rules.engine import RulePolicy
from sluice.rules.ports import Identity, PriorOutcome
from sluice.rules.users import UserPolicy
from sluice.store.automations import Pending
from sluice.store.contacts import TraitWrite, apply_trait_writes
from sluice.store.dead_letters import (
    BATCH,
    NewDeadLetter,
    encode_payload,
    provisional_note,
    record_dead_letter,
)
from sluice.store.engine import by_workspace, insert_ignoring_conflicts, point_lookup, writing
from sluice.store.schema import (
    contacts,
    events,
    outcomes,
    repeats,
    trigger_deliveries,
    workspaces,
)
from sluice.worker.ingest.fanout import deliverable, plan_fan_out
from sluice.worker.ingest.records import event_row, outcome_row, repeat_row
from sluice.worker.ingest.settle import settle_message_ids, settle_order_claims

MAX_WORKSPACE_ID_CHARS = 64  # as Event.workspace_id


@dataclass(frozen=True, slots=True)
class Recorded:
    """A stored batch: its final decisions, and the triggers it created that need delivery."""

    decisions: list[Decision]
    triggers: list[Pending] = field(default_factory=list)


class EventStore:
    def __init__(
        self, engine: Engine, *, policy_cache_s: float = 30.0, trigger_max_age_s: int = 7200
    ) -> None:
        self.engine = engine
        self.trigger_max_age_s = trigger_max_age_s
        self._policy_cache_s = policy_cache_s
        self._policies: dict[str, tuple[float, Mapping[str, Any]]] = {}

    def workspace_policies(self, ids: Iterable[str], default: RulePolicy) -> dict[str, RulePolicy]:
        """Each existing workspace's rule policy: its overrides on top of ``default``.
        Overrides are cached for ``policy_cache_s``; an unknown workspace is asked again
        every time, so a new one is usable at once."""
        now = time.monotonic()
        wanted = set(ids)
        settings: dict[str, Mapping[str, Any]] = {}
        for workspace_id in wanted:
            cached = self._policies.get(workspace_id)
            if cached is not None and cached[0] > now:
                settings[workspace_id] = cached[1]
        missing = wanted - settings.keys()
        if missing:
            query = select(workspaces.c.id, workspaces.c.settings).where(
                workspaces.c.id.in_(missing)
            )
            with self.engine.connect() as conn:
                for row in conn.execute(query):
                    settings[row.id] = row.settings or {}
                    self._policies[row.id] = (now + self._policy_cache_s, settings[row.id])
        return {ws: _policy(default, overrides) for ws, overrides in settings.items()}

    def prior_outcomes(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], PriorOutcome]:
        found: dict[tuple[str, str], PriorOutcome] = {}
        with self.engine.connect() as conn:
            for workspace_id, message_ids in by_workspace(keys).items():
                query = point_lookup(
                    conn.dialect,
                    [
                        outcomes.c.message_id,
                        outcomes.c.batch_id,
                        outcomes.c.status,
                        outcomes.c.reason,
                        outcomes.c.detail,
                    ],
                    outcomes.c.message_id,
                    message_ids,
                    outcomes.c.workspace_id == workspace_id,
                )
                for row in conn.execute(query):
                    reason = Reason(row.reason) if row.reason else None
                    verdict = Verdict(Status(row.status), reason, row.detail)
                    found[(workspace_id, row.message_id)] = PriorOutcome(row.batch_id, verdict)
        return found

    def existing_identities(
        self, identities: Iterable[tuple[str, Identity]]
    ) -> set[tuple[str, Identity]]:
        wanted = set(identities)
        if not wanted:
            return set()
        user_ids = by_workspace((ws, value) for ws, (kind, value) in wanted if kind == "id")
        emails = by_workspace((ws, value) for ws, (kind, value) in wanted if kind == "email")
        found: set[tuple[str, Identity]] = set()
        with self.engine.connect() as conn:
            for workspace_id in user_ids.keys() | emails.keys():
                by_key = ((contacts.c.user_id, user_ids), (contacts.c.email, emails))
                for key, values in by_key:
                    if not values.get(workspace_id):
                        continue
                    query = point_lookup(
                        conn.dialect,
                        [contacts.c.user_id, contacts.c.email],
                        key,
                        values[workspace_id],
                        contacts.c.workspace_id == workspace_id,
                    )
                    for row in conn.execute(query):
                        found.add((workspace_id, ("id", row.user_id)))
                        found.add((workspace_id, ("email", row.email)))
        return found & wanted

    def record_batch(self, batch_id: str, decisions: Sequence[Decision], now: datetime) -> Recorded:
        """Store a decided batch and its triggers in one transaction.

        The database has the last word: an order already claimed in ``order_claims`` by
        another message turns an accepted confirmation into ``duplicate_order`` (Redis lost
        its claim); rows whose (workspace, message_id) exists already are skipped, so a
        redelivered batch changes nothing and the first verdict stands; and a message id
        whose outcome another batch wrote first is recorded as a repeat. Triggers are
        created only for the accepted events this batch owns (``sluice.worker.ingest.fanout``).
        """
        final = list(decisions)  # the settle steps rewrite the fresh ones in place
        fresh = [i for i, d in enumerate(final) if not d.replayed]
        if not fresh:  # a redelivery: everything was committed before
            return Recorded(final)
        with writing(self.engine) as conn:
            settle_order_claims(conn, final, fresh, now)
            fan_out = plan_fan_out(conn, final, fresh, now, self.trigger_max_age_s)
            stored = [final[i] for i in fresh if final[i].stored]
            apply_trait_writes(conn, [_trait_write(d) for d in stored if d.writes_traits], now)
            insert_ignoring_conflicts(conn, events, [event_row(d, batch_id, now) for d in stored])
            inserted = insert_ignoring_conflicts(
                conn,
                outcomes,
                [outcome_row(final[i], batch_id, now) for i in fresh if not final[i].repeat],
                returning=("workspace_id", "message_id"),
            )
            settle_message_ids(conn, final, fresh, batch_id, {(ws, m) for ws, m in inserted})
            insert_ignoring_conflicts(
                conn,
                repeats,
                [repeat_row(final[i], batch_id, now) for i in fresh if final[i].repeat],
            )
            owned = [final[i] for i in fresh if final[i].verdict.status is Status.ACCEPTED]
            triggers = fan_out.rows(owned, now)
            insert_ignoring_conflicts(conn, trigger_deliveries, triggers)
        return Recorded(final, deliverable(triggers))

    def record_outcomes_only(
        self, batch_id: str, decisions: Sequence[Decision], now: datetime
    ) -> None:
        """Outcomes without events or effects (for events that will not be processed)."""
        with writing(self.engine) as conn:
            insert_ignoring_conflicts(
                conn, outcomes, [outcome_row(d, batch_id, now) for d in decisions]
            )

    def dead_letter(
        self,
        *,
        batch_id: str | None,
        reason: str,
        detail: str | None,
        payload: Any,
        now: datetime,
        items: Sequence[Event | InvalidEvent] | None = None,
        kind: str = BATCH,
    ) -> DeadLettered:
        """Keep a message a worker gives up on, whole, in ``dead_letters``. With the decoded
        ``items`` of a batch, each of its events that has an identity is rejected
        provisionally, with a pointer to the dead letter, in the same transaction
        (docs/dead-letters.md)."""
        keyed = [i for i in items or () if _storable(i.workspace_id, i.message_id)]
        if keyed and batch_id is None:
            raise ValueError("the events of a dead letter are rejected under its batch id")
        letter = NewDeadLetter(
            batch_id=batch_id,
            reason=reason,
            detail=detail,
            payload=encode_payload(payload),
            kind=kind,
            events=None if items is None else len(items),
            workspaces=Counter(
                ws for ws in (i.workspace_id for i in items or ()) if ws and _storable(ws)
            ),
        )
        with writing(self.engine) as conn:
            letter_id = record_dead_letter(conn, letter, now)
            note = provisional_note(reason, letter_id)
            rejected = [
                Decision(
                    item.workspace_id,
                    item.message_id,
                    Verdict.reject(Reason.INVALID, note),
                    event=item if isinstance(item, Event) else None,
                    raw=None if isinstance(item, Event) else item.raw,
                )
                for item in keyed
                if item.workspace_id is not None and item.message_id is not None
            ]
            insert_ignoring_conflicts(
                conn, outcomes, [outcome_row(d, batch_id or "", now) for d in rejected]
            )
        return DeadLettered(letter_id, rejected)


def _storable(*keys: str | None) -> bool:
    """Whether an event's identity can be a key of ``outcomes`` and
    ``dead_letter_workspaces``: the worker's last resort must not fail on an invalid
    event's over-long or NUL-bearing ids (PostgreSQL refuses them), or the batch would be
    requeued for ever; such an event stays in the dead letter's payload only."""
    limits = (MAX_WORKSPACE_ID_CHARS, MAX_MESSAGE_ID_CHARS)  # outcomes' column sizes
    return all(
        key is not None and len(key) <= limit and "\x00" not in key
        for key, limit in zip(keys, limits, strict=False)
    )


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A dead letter's id, and the provisional rejections of its events."""

    dead_letter_id: int
    rejected: list[Decision]


def _policy(default: RulePolicy, overrides: Mapping[str, Any]) -> RulePolicy:
    known = {k: v for k, v in overrides.items() if k in RulePolicy.__dataclass_fields__}
    return replace(default, **known)


def _trait_write(decision: Decision) -> TraitWrite:
    assert decision.event is not None  # a stored decision has its event
    return TraitWrite.of(decision.event, create=decision.user_policy is UserPolicy.CREATE)
