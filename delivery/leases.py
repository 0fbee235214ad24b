"""Trigger leases: the table of triggers is the deliverers' work list.

A deliverer claims due triggers many at a time, in one transaction: each claim is a lease
(the attempt counter goes up, ``lease_until`` is set, and the trigger is not due again until
the lease ends), so two deliverers never attempt the same trigger at once (a trigger
another claim holds is skipped) and one killed mid-attempt only delays the next attempt
until its lease runs out. A claim takes no more triggers of an automation than the
deliverer has room for (``per_automation`` less those it holds), so a slow endpoint holds
that many, never all. Attempts are recorded many at a time too, with their consequences
for the trigger and its automation (the health policy: ``sluice.delivery.automation_health``).
The housekeeping settles the triggers no claim will take (``settle_abandoned``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, exists, literal_column, select, update

from sluice.actions import AttemptResult, Outcome
from sluice.delivery.automation_health import AutomationResult, apply_results
from sluice.delivery.payload import EVENT_FIELDS
from sluice.producer.events import as_utc
from sluice.store.automations import (
    OPEN,
    Automation,
    AutomationStatus,
    TriggerStatus,
    automation_of,
)
from sluice.store.engine import (
    by_workspace,
    insert_ignoring_conflicts,
    matches_any,
    point_lookup,
    update_by_key,
    writing,
)
from sluice.store.schema import automations, delivery_attempts, events, trigger_deliveries

EARLY_TOLERANCE_S = 0.05

triggers = trigger_deliveries
# Written as literals, so that PostgreSQL plans them with the partial index on open triggers.
IS_OPEN = triggers.c.status.in_([literal_column(f"'{status}'") for status in OPEN])


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    lease_s: float
    max_attempts: int
    disable_after_s: float


@dataclass(frozen=True, slots=True)
class Claimed:
    trigger_id: str
    attempt: int
    automation: Automation
    event: dict[str, Any]
    created_at: datetime
    failing: bool = False  # the automation has failed since its last success
    leased_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attempted:
    """An attempt to record: what was claimed, how it went, and the wait before the next
    attempt should it be retried."""

    claim: Claimed
    outcome: Outcome
    started_at: datetime
    retry_in_s: float


class TriggerStore:
    def __init__(self, engine: Engine, policy: DeliveryPolicy) -> None:
        self.engine = engine
        self.policy = policy

    def claim_due(
        self,
        now: datetime,
        limit: int,
        *,
        per_automation: int,
        held: Mapping[str, int] | None = None,
    ) -> list[Claimed]:
        """Lease up to ``limit`` due triggers of active automations, the longest-waiting
        first, no more of an automation than ``per_automation`` less the triggers of it the
        caller already ``held`` (by automation id); with their automations and events."""
        soon = now + timedelta(seconds=EARLY_TOLERANCE_S)
        lease_until = now + timedelta(seconds=self.policy.lease_s)
        with writing(self.engine) as conn:
            _commit_without_waiting(conn)
            ids, candidates = self._due(conn, soon, limit, per_automation, held or {})
            if not ids:
                return []
            leased = conn.execute(
                update(triggers)
                .where(matches_any(conn.dialect, triggers.c.id, ids))  # locked by ``_due``
                .values(
                    attempts=triggers.c.attempts + 1,
                    lease_until=lease_until,
                    next_attempt_at=lease_until,  # due again only if the attempt is lost
                    updated_at=now,
                )
                .returning(
                    triggers.c.id,
                    triggers.c.attempts,
                    triggers.c.workspace_id,
                    triggers.c.message_id,
                    triggers.c.automation_id,
                    triggers.c.created_at,
                )
            ).all()
            return self._claims(conn, leased, candidates, lease_until)

    def _due(
        self,
        conn: Connection,
        soon: datetime,
        limit: int,
        per_automation: int,
        held: Mapping[str, int],
    ) -> tuple[list[str], dict[str, Any]]:
        """Due trigger ids, locked, shared among the automations that have some and room
        for more (in a random order, so that none waits behind the others every time), and
        those automations' rows by id. A trigger another transaction holds (a claim, or an
        attempt being recorded) is skipped."""
        policy = self.policy
        due = (
            IS_OPEN,
            triggers.c.next_attempt_at <= soon,
            triggers.c.attempts < policy.max_attempts,
        )
        candidates = {
            row.id: row
            for row in conn.execute(
                select(automations)
                .where(automations.c.status == str(AutomationStatus.ACTIVE))
                .where(exists().where(triggers.c.automation_id == automations.c.id, *due))
            )
        }
        order = list(candidates)
        random.shuffle(order)
        ids: list[str] = []
        for automation_id in order:
            room = min(per_automation - held.get(automation_id, 0), limit - len(ids))
            if room <= 0:
                continue
            ids += conn.scalars(
                select(triggers.c.id)
                .where(triggers.c.automation_id == automation_id, *due)
                .order_by(triggers.c.next_attempt_at)
                .limit(room)
                .with_for_update(skip_locked=True)
            ).all()
            if len(ids) >= limit:
                break
        return ids, candidates

    def _claims(
        self,
        conn: Connection,
        leased: Sequence[Any],
        candidates: Mapping[str, Any],
        lease_until: datetime,
    ) -> list[Claimed]:
        """The leased rows with their automations (``candidates``: the rows ``_due`` read)
        and their events (one query per workspace)."""
        found = {
            automation_id: (
                automation_of(candidates[automation_id]),
                candidates[automation_id].failing_since is not None,
            )
            for automation_id in {row.automation_id for row in leased}
        }
        stored: dict[tuple[str, str], dict[str, Any]] = {}
        columns = [events.c[name] for name in EVENT_FIELDS]
        for workspace_id, message_ids in by_workspace(
            (row.workspace_id, row.message_id) for row in leased
        ).items():
            query = point_lookup(
                conn.dialect,
                columns,
                events.c.message_id,
                message_ids,
                events.c.workspace_id == workspace_id,
            )
            for found_event in conn.execute(query):
                stored[(workspace_id, found_event.message_id)] = dict(
                    zip(EVENT_FIELDS, found_event, strict=True)
                )
        claims = []
        for row in leased:
            automation, failing = found[row.automation_id]
            # An event erased since its trigger was made leaves only its id.
            event = stored.get((row.workspace_id, row.message_id), {"message_id": row.message_id})
            created_at = as_utc(row.created_at)
            claims.append(
                Claimed(row.id, row.attempts, automation, event, created_at, failing, lease_until)
            )
        return claims

    def record(
        self, attempts: Sequence[Attempted], now: datetime, unstarted: Sequence[Claimed] = ()
    ) -> Counter[str]:
        """Record attempts and their consequences, in one transaction: the attempt rows,
        each trigger's new state (delivered, retrying at its time, or failed), and what they
        mean for each automation (``sluice.delivery.automation_health``: no longer failing,
        failing, or disabled). A trigger whose lease ran
        out and was claimed again keeps what the newer attempt records: this attempt is on
        record, its verdict is not. A verdict arriving after its lease ran out and the
        trigger was settled without it (``settle_abandoned``) is what happened, and wins.

        ``unstarted`` are claims given back without an attempt (the deliverer stopped, or
        their lease would have run out first): their attempt is not counted and they are
        due at once, unless another claim has taken them since.

        Returns how many attempts left their trigger in each status, once committed."""
        if not attempts and not unstarted:
            return Counter()
        attempts = sorted(attempts, key=lambda done: done.claim.trigger_id)  # lock order
        with writing(self.engine) as conn:
            _commit_without_waiting(conn)
            # Every trigger this records is locked first, all in id order (given back or
            # attempted): an erasure or a purge locks them in that order too.
            present = _still_there(
                conn,
                [done.claim.trigger_id for done in attempts] + [c.trigger_id for c in unstarted],
            )
            if unstarted:
                self._give_back(conn, unstarted, now)
            attempts = [done for done in attempts if done.claim.trigger_id in present]
            if not attempts:
                return Counter()
            insert_ignoring_conflicts(
                conn,
                delivery_attempts,
                [
                    {
                        "trigger_id": done.claim.trigger_id,
                        "attempt": done.claim.attempt,
                        "started_at": done.started_at,
                        "latency_ms": done.outcome.latency_ms,
                        "status_code": done.outcome.status_code,
                        "error": done.outcome.error,
                        "result": str(done.outcome.result),
                    }
                    for done in attempts
                ],
            )
            verdicts = [self._verdict(done, now) for done in attempts]
            update_by_key(conn, triggers, ("id", "attempts"), verdicts)
            apply_results(
                conn,
                (
                    AutomationResult(
                        done.claim.automation.id, done.outcome.result, done.claim.failing
                    )
                    for done in attempts
                ),
                now,
                disable_after_s=self.policy.disable_after_s,
            )
        return Counter(verdict["status"] for verdict in verdicts)

    def _verdict(self, done: Attempted, now: datetime) -> dict[str, Any]:
        result, claim = done.outcome.result, done.claim
        retry = result is AttemptResult.RETRY and claim.attempt < self.policy.max_attempts
        if result is AttemptResult.DELIVERED:
            status = TriggerStatus.DELIVERED
        elif retry:
            status = TriggerStatus.RETRYING
        else:
            status = TriggerStatus.FAILED
        error = done.outcome.error
        if result is AttemptResult.RETRY and not retry:
            error = f"{error}; gave up after {claim.attempt} attempts"
        return {
            "id": claim.trigger_id,
            "attempts": claim.attempt,  # only while this claim is the trigger's latest
            "status": str(status),
            "lease_until": None,
            "next_attempt_at": now + timedelta(seconds=done.retry_in_s) if retry else None,
            "last_status_code": done.outcome.status_code,
            "last_error": error,
            "updated_at": now,
            "delivered_at": now if status is TriggerStatus.DELIVERED else None,
        }

    @staticmethod
    def _give_back(conn: Connection, claims: Sequence[Claimed], now: datetime) -> None:
        conn.execute(
            update(triggers)
            .where(
                triggers.c.id == bindparam("k_id"),
                triggers.c.attempts == bindparam("k_attempt"),
                triggers.c.lease_until == bindparam("k_lease"),  # this claim's, not a newer one's
                IS_OPEN,
            )
            .values(attempts=triggers.c.attempts - 1, lease_until=None, next_attempt_at=now),
            [
                {
                    "k_id": claim.trigger_id,
                    "k_attempt": claim.attempt,
                    "k_lease": claim.leased_until,
                }
                for claim in sorted(claims, key=lambda claim: claim.trigger_id)
            ],
        )

    def settle_abandoned(self, now: datetime) -> Counter[str]:
        """Settle the open triggers no claim will take: those whose last allowed attempt
        never finished (failed), and those of a disabled automation whose attempt was
        under way when it was disabled (cancelled). How many it settled in each status."""
        with writing(self.engine) as conn:
            free = triggers.c.next_attempt_at <= now
            exhausted = conn.execute(
                update(triggers)
                .where(IS_OPEN, free, triggers.c.attempts >= self.policy.max_attempts)
                .values(
                    status=str(TriggerStatus.FAILED),
                    lease_until=None,
                    next_attempt_at=None,
                    last_error=(
                        f"gave up after {self.policy.max_attempts} attempts "
                        "(the last did not finish)"
                    ),
                    updated_at=now,
                )
            ).rowcount
            disabled = select(automations.c.id).where(
                automations.c.status != str(AutomationStatus.ACTIVE)
            )
            orphaned = conn.execute(
                update(triggers)
                .where(IS_OPEN, free, triggers.c.automation_id.in_(disabled))
                .values(
                    status=str(TriggerStatus.CANCELLED),
                    lease_until=None,
                    next_attempt_at=None,
                    last_error="automation disabled",
                    updated_at=now,
                )
            ).rowcount
        settled = {TriggerStatus.FAILED: exhausted, TriggerStatus.CANCELLED: orphaned}
        return Counter({str(status): int(n) for status, n in settled.items() if n})


def _commit_without_waiting(conn: Connection) -> None:
    """On PostgreSQL, commit without waiting for the WAL to reach the disk. A crash of the
    server (not a stop) may forget the last moments of claims and records: those triggers
    are attempted again, with the same ``webhook-id`` (at least once, docs/reliability.md
    #12). Waiting for the disk would bound each deliverer to a few claims a second."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


def _still_there(conn: Connection, trigger_ids: Sequence[str]) -> set[str]:
    """Those of the triggers that still exist, their rows locked (in id order, as every
    writer of triggers locks them). A trigger erased or purged while its attempt was under
    way (docs/data-lifecycle.md) has no row to record against: its attempt row would break
    the foreign key and fail the whole batch of records, again at every retry."""
    if not trigger_ids:
        return set()
    query = (
        select(triggers.c.id)
        .where(triggers.c.id.in_(sorted(set(trigger_ids))))
        .order_by(triggers.c.id)
    ).with_for_update()
    return set(conn.scalars(query))
