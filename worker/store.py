"""Persistence of decided batches (one transaction each), and the lookups the rules and the
API read: prior outcomes (the message ledger), existing users, workspace policies."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, or_, select

from producer.events import Event, EventKind, as_utc
from rules import Reason, Status, Verdict
from rules.engine import Decided, RulePolicy, order_id_of
from rules.ports import Identity, PriorOutcome
from rules.users import UserPolicy, user_policy
from worker.contacts import TraitWrite, apply_trait_writes
from worker.db import insert_ignoring_conflicts, matches_any, writing
from worker.schema import (
    contacts,
    dead_letters,
    events,
    order_claims,
    outcomes,
    repeats,
    workspaces,
)

RAW_LIMIT_BYTES = 4096
DEAD_LETTER_LIMIT_BYTES = 1_000_000


def truncate(data: bytes, limit: int) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return text if len(data) <= limit else text + "…"


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict for one event of a batch; ``event`` is None for an event that did not
    validate (then ``raw`` is what arrived)."""

    workspace_id: str
    message_id: str
    verdict: Verdict
    event: Event | None = None
    raw: Any = None
    bot: bool = False
    replayed: bool = False  # decided and committed by an earlier delivery of this batch

    @classmethod
    def of(cls, decided: Decided) -> Decision:
        event = decided.event
        return cls(
            event.workspace_id,
            event.message_id,
            decided.verdict,
            event,
            bot=decided.bot,
            replayed=decided.replayed,
        )


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    workspace_id: str
    message_id: str
    status: Status
    reason: Reason | None
    detail: str | None
    kind: str | None
    name: str | None
    raw: str | None
    decided_at: datetime


class EventStore:
    def __init__(self, engine: Engine, *, policy_cache_s: float = 30.0) -> None:
        self.engine = engine
        self._policy_cache_s = policy_cache_s
        self._policies: dict[str, tuple[float, Mapping[str, Any]]] = {}

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

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
            for workspace_id, message_ids in _by_workspace(keys).items():
                query = select(
                    outcomes.c.message_id,
                    outcomes.c.batch_id,
                    outcomes.c.status,
                    outcomes.c.reason,
                    outcomes.c.detail,
                ).where(
                    outcomes.c.workspace_id == workspace_id,
                    matches_any(conn.dialect, outcomes.c.message_id, message_ids),
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
        by_workspace: dict[str, dict[str, set[str]]] = {}
        for workspace_id, (kind, value) in wanted:
            by_workspace.setdefault(workspace_id, {"id": set(), "email": set()})[kind].add(value)
        found: set[tuple[str, Identity]] = set()
        with self.engine.connect() as conn:
            for workspace_id, names in by_workspace.items():
                query = select(contacts.c.user_id, contacts.c.email).where(
                    contacts.c.workspace_id == workspace_id,
                    or_(
                        matches_any(conn.dialect, contacts.c.user_id, names["id"]),
                        matches_any(conn.dialect, contacts.c.email, names["email"]),
                    ),
                )
                for row in conn.execute(query):
                    found.add((workspace_id, ("id", row.user_id)))
                    found.add((workspace_id, ("email", row.email)))
        return found & wanted

    def record_batch(
        self, batch_id: str, decisions: Sequence[Decision], now: datetime
    ) -> list[Decision]:
        """Store a decided batch in one transaction; return the final decisions.

        The database has the last word: an order already claimed in ``order_claims`` by
        another message turns an accepted confirmation into ``duplicate_order`` (Redis lost
        its claim); rows whose (workspace, message_id) exists already are skipped, so a
        redelivered batch changes nothing and the first verdict stands; and a message id
        whose outcome another batch wrote first is recorded as a repeat.
        """
        fresh = [d for d in decisions if not d.replayed]
        with writing(self.engine) as conn:
            fresh = _settle_order_claims(conn, fresh, now)
            accepted = [d for d in fresh if d.verdict.status is Status.ACCEPTED and d.event]
            apply_trait_writes(conn, _trait_writes(accepted), now)
            insert_ignoring_conflicts(
                conn, events, [_event_row(d, batch_id, now) for d in accepted]
            )
            decided = [d for d in fresh if d.verdict.reason is not Reason.DUPLICATE_MESSAGE]
            insert_ignoring_conflicts(
                conn, outcomes, [_outcome_row(d, batch_id, now) for d in decided]
            )
            fresh = _settle_message_ids(conn, fresh, batch_id)
            insert_ignoring_conflicts(
                conn,
                repeats,
                [
                    _repeat_row(d, batch_id, now)
                    for d in fresh
                    if d.verdict.reason is Reason.DUPLICATE_MESSAGE
                ],
            )
        settled = iter(fresh)  # same order as ``decisions`` without the replayed ones
        return [d if d.replayed else next(settled) for d in decisions]

    def record_outcomes_only(
        self, batch_id: str, decisions: Sequence[Decision], now: datetime
    ) -> None:
        """Outcomes without events or effects (for events that will not be processed)."""
        with writing(self.engine) as conn:
            insert_ignoring_conflicts(
                conn, outcomes, [_outcome_row(d, batch_id, now) for d in decisions]
            )

    def outcomes(self, workspace_id: str, message_ids: Sequence[str]) -> dict[str, OutcomeRecord]:
        """The decided ones among ``message_ids``, one query."""
        if not message_ids:
            return {}
        with self.engine.connect() as conn:
            query = select(outcomes).where(
                outcomes.c.workspace_id == workspace_id,
                matches_any(conn.dialect, outcomes.c.message_id, message_ids),
            )
            return {row.message_id: _outcome_record(row) for row in conn.execute(query)}

    def outcome(self, workspace_id: str, message_id: str) -> OutcomeRecord | None:
        query = select(outcomes).where(
            outcomes.c.workspace_id == workspace_id, outcomes.c.message_id == message_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _outcome_record(row)

    def dead_letter(
        self, *, batch_id: str | None, reason: str, detail: str | None, payload: Any, now: datetime
    ) -> None:
        encoded = payload if isinstance(payload, bytes) else orjson.dumps(payload, default=repr)
        with writing(self.engine) as conn:
            conn.execute(
                dead_letters.insert().values(
                    batch_id=batch_id,
                    reason=reason[:200],
                    detail=detail,
                    payload=truncate(encoded, DEAD_LETTER_LIMIT_BYTES),
                    created_at=now,
                )
            )


def _outcome_record(row: Any) -> OutcomeRecord:
    return OutcomeRecord(
        workspace_id=row.workspace_id,
        message_id=row.message_id,
        status=Status(row.status),
        reason=Reason(row.reason) if row.reason else None,
        detail=row.detail,
        kind=row.kind,
        name=row.name,
        raw=row.raw,
        decided_at=as_utc(row.decided_at),
    )


def _by_workspace(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Group (workspace_id, key) pairs, for ``workspace_id = ? AND key IN (...)`` queries:
    an index range scan, where a row-value ``IN`` of hundreds of pairs is planned as a
    slow ``OR`` chain."""
    grouped: dict[str, set[str]] = {}
    for workspace_id, key in keys:
        grouped.setdefault(workspace_id, set()).add(key)
    return {workspace_id: sorted(values) for workspace_id, values in grouped.items()}


def _policy(default: RulePolicy, overrides: Mapping[str, Any]) -> RulePolicy:
    known = {k: v for k, v in overrides.items() if k in RulePolicy.__dataclass_fields__}
    return replace(default, **known)


def _settle_order_claims(
    conn: Connection, decisions: list[Decision], now: datetime
) -> list[Decision]:
    claiming = {
        i: order_id
        for i, d in enumerate(decisions)
        if d.event is not None
        and d.event.kind is EventKind.CONFIRMATION
        and d.verdict.status is Status.ACCEPTED
        and not d.bot
        and (order_id := order_id_of(d.event)) is not None
    }
    if not claiming:
        return decisions
    insert_ignoring_conflicts(
        conn,
        order_claims,
        [
            {
                "workspace_id": decisions[i].workspace_id,
                "order_id": order_id,
                "message_id": decisions[i].message_id,
                "claimed_at": now,
            }
            for i, order_id in claiming.items()
        ],
    )
    holders: dict[tuple[str, str], str] = {}
    pairs = [(decisions[i].workspace_id, order_id) for i, order_id in claiming.items()]
    for workspace_id, order_ids in _by_workspace(pairs).items():
        query = select(order_claims.c.order_id, order_claims.c.message_id).where(
            order_claims.c.workspace_id == workspace_id,
            matches_any(conn.dialect, order_claims.c.order_id, order_ids),
        )
        holders.update(((workspace_id, r.order_id), r.message_id) for r in conn.execute(query))
    settled = list(decisions)
    for i, order_id in claiming.items():
        holder = holders.get((decisions[i].workspace_id, order_id))
        if holder is not None and holder != decisions[i].message_id:
            detail = f"order {order_id} was confirmed by message {holder}"
            settled[i] = replace(
                decisions[i], verdict=Verdict.discard(Reason.DUPLICATE_ORDER, detail)
            )
    return settled


def _settle_message_ids(
    conn: Connection, decisions: list[Decision], batch_id: str
) -> list[Decision]:
    """Which batch owns each message id's outcome now. Another batch deciding the same
    message id concurrently (both found no prior outcome) wins if it committed first;
    ours are then repeats. (PostgreSQL: our insert waited for theirs; SQLite: serialised.)"""
    keys = [
        (d.workspace_id, d.message_id)
        for d in decisions
        if d.verdict.reason is not Reason.DUPLICATE_MESSAGE
    ]
    lost: set[tuple[str, str]] = set()
    for workspace_id, message_ids in _by_workspace(keys).items():
        query = select(outcomes.c.message_id).where(
            outcomes.c.workspace_id == workspace_id,
            matches_any(conn.dialect, outcomes.c.message_id, message_ids),
            outcomes.c.batch_id != batch_id,
        )
        lost.update((workspace_id, message_id) for message_id in conn.execute(query).scalars())
    if not lost:
        return decisions
    repeat = Verdict.discard(
        Reason.DUPLICATE_MESSAGE, "message id decided by another batch at the same time"
    )
    return [
        replace(d, verdict=repeat) if (d.workspace_id, d.message_id) in lost else d
        for d in decisions
    ]


def _trait_writes(accepted: list[Decision]) -> list[TraitWrite]:
    writes = []
    for decision in accepted:
        assert decision.event is not None
        policy = user_policy(decision.event)
        if policy is not UserPolicy.NONE and not decision.bot:
            writes.append(TraitWrite.of(decision.event, create=policy is UserPolicy.CREATE))
    return writes


def _event_row(decision: Decision, batch_id: str, now: datetime) -> dict[str, Any]:
    assert decision.event is not None
    row = decision.event.model_dump()
    row["kind"] = str(decision.event.kind)
    row["batch_id"] = batch_id
    row["stored_at"] = now
    row["is_bot"] = decision.bot
    return row


def _raw(decision: Decision) -> str:
    source = decision.event.model_dump(mode="json") if decision.event else decision.raw
    return truncate(orjson.dumps(source, default=repr), RAW_LIMIT_BYTES)


def _outcome_row(decision: Decision, batch_id: str, now: datetime) -> dict[str, Any]:
    verdict, event = decision.verdict, decision.event
    return {
        "workspace_id": decision.workspace_id,
        "message_id": decision.message_id,
        "status": str(verdict.status),
        "reason": str(verdict.reason) if verdict.reason else None,
        "detail": verdict.detail,
        "kind": str(event.kind) if event is not None else None,
        "name": event.name if event is not None else None,
        "raw": _raw(decision) if verdict.reason is not None else None,
        "batch_id": batch_id,
        "decided_at": now,
    }


def _repeat_row(decision: Decision, batch_id: str, now: datetime) -> dict[str, Any]:
    return {
        "workspace_id": decision.workspace_id,
        "message_id": decision.message_id,
        "batch_id": batch_id,
        "raw": _raw(decision),
        "seen_at": now,
    }
