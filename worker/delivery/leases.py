"""Trigger leases: claiming a trigger delivery for one attempt and recording the attempt.

A claim is a lease: the attempt counter goes up and ``lease_until`` is set in one locked
transaction, so two copies of a delivery task (a replayed batch publishes again; Redis may
redeliver) never attempt the same trigger at once, and a worker killed mid-attempt only
delays the next one until the lease ends. At most ``max_in_flight`` deliveries of one
automation hold a lease at a time: a slow endpoint holds that many worker threads, never
all of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select, update

from sluice.producer.events import as_utc
from sluice.worker.actions import AttemptResult, Outcome
from sluice.worker.admin.automations import (
    OPEN,
    Automation,
    AutomationStatus,
    TriggerStatus,
    automation_of,
    disable_automation,
)
from sluice.worker.db.engine import writing
from sluice.worker.db.schema import automations, delivery_attempts, events, trigger_deliveries

EARLY_TOLERANCE_S = 0.05
EVENT_FIELDS = (
    "message_id",
    "kind",
    "name",
    "user_id",
    "email",
    "anonymous_id",
    "traits",
    "properties",
    "context",
    "timestamp",
    "sent_at",
    "received_at",
    "source",
)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    lease_s: float
    max_attempts: int
    max_in_flight: int
    busy_delay_s: float
    disable_after_s: float


@dataclass(frozen=True, slots=True)
class Claimed:
    trigger_id: str
    attempt: int
    automation: Automation
    event: dict[str, Any]
    created_at: datetime
    failing: bool = False  # the automation has failed since its last success


@dataclass(frozen=True, slots=True)
class Later:
    """Not now: the trigger is due at ``at`` (backoff, a running attempt, or a busy endpoint)."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Settled:
    status: str


class TriggerStore:
    def __init__(self, engine: Engine, policy: DeliveryPolicy) -> None:
        self.engine = engine
        self.policy = policy

    def claim(self, trigger_id: str, now: datetime) -> Claimed | Later | Settled:
        """Lease the trigger for one attempt, in one ``UPDATE … RETURNING`` when it is due
        (the common case); otherwise say why not (``Later`` or ``Settled``)."""
        policy = self.policy
        soon = now + timedelta(seconds=EARLY_TOLERANCE_S)
        busy = trigger_deliveries.alias("busy")
        in_flight = (
            select(func.count())
            .where(
                busy.c.automation_id == trigger_deliveries.c.automation_id,
                busy.c.lease_until > now,
            )
            .scalar_subquery()
        )
        active = (
            select(automations.c.id)
            .where(
                automations.c.id == trigger_deliveries.c.automation_id,
                automations.c.status == str(AutomationStatus.ACTIVE),
            )
            .exists()
        )
        lease = (
            update(trigger_deliveries)
            .where(
                trigger_deliveries.c.id == trigger_id,
                trigger_deliveries.c.status.in_(OPEN),
                or_(
                    trigger_deliveries.c.next_attempt_at.is_(None),
                    trigger_deliveries.c.next_attempt_at <= soon,
                ),
                or_(
                    trigger_deliveries.c.lease_until.is_(None),
                    trigger_deliveries.c.lease_until <= soon,
                ),
                trigger_deliveries.c.attempts < policy.max_attempts,
                in_flight < policy.max_in_flight,
                active,
            )
            .values(
                attempts=trigger_deliveries.c.attempts + 1,
                lease_until=now + timedelta(seconds=policy.lease_s),
                updated_at=now,
            )
            .returning(
                trigger_deliveries.c.attempts,
                trigger_deliveries.c.workspace_id,
                trigger_deliveries.c.message_id,
                trigger_deliveries.c.automation_id,
                trigger_deliveries.c.created_at,
            )
        )
        with writing(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                # Claims of one automation take turns, so that the in-flight count is
                # exact (SQLite's write lock does this already). NO KEY UPDATE does not
                # wait for batches inserting triggers that reference the automation.
                owner = select(trigger_deliveries.c.automation_id).where(
                    trigger_deliveries.c.id == trigger_id
                )
                conn.execute(
                    select(automations.c.id)
                    .where(automations.c.id == owner.scalar_subquery())
                    .with_for_update(key_share=True)
                )
            leased = conn.execute(lease).first()
            if leased is None:
                return self._not_now(conn, trigger_id, now)
            row = conn.execute(
                select(automations, *(events.c[name].label(f"ev_{name}") for name in EVENT_FIELDS))
                .join(events, events.c.workspace_id == automations.c.workspace_id)
                .where(
                    automations.c.id == leased.automation_id,
                    events.c.message_id == leased.message_id,
                )
            ).one()
        event = {name: getattr(row, f"ev_{name}") for name in EVENT_FIELDS}
        return Claimed(
            trigger_id,
            leased.attempts,
            automation_of(row),
            event,
            as_utc(leased.created_at),
            failing=row.failing_since is not None,
        )

    def _not_now(self, conn: Connection, trigger_id: str, now: datetime) -> Later | Settled:
        """Why a trigger could not be leased, acting on it where that settles it."""
        row = conn.execute(
            select(
                trigger_deliveries,
                automations.c.status.label("automation_status"),
                automations.c.disabled_reason,
            )
            .join(automations, automations.c.id == trigger_deliveries.c.automation_id)
            .where(trigger_deliveries.c.id == trigger_id)
        ).first()
        if row is None:
            return Settled("missing")
        if row.status not in OPEN:
            return Settled(row.status)
        if row.automation_status != AutomationStatus.ACTIVE:
            reason = f"automation disabled: {row.disabled_reason}"
            self._close(conn, trigger_id, TriggerStatus.CANCELLED, now, reason)
            return Settled(str(TriggerStatus.CANCELLED))
        due = max(as_utc(t) for t in (row.next_attempt_at, row.lease_until, now) if t)
        if due > now + timedelta(seconds=EARLY_TOLERANCE_S):
            return Later(due)
        if row.attempts >= self.policy.max_attempts:
            reason = f"gave up after {row.attempts} attempts (the last did not finish)"
            self._close(conn, trigger_id, TriggerStatus.FAILED, now, reason)
            return Settled(str(TriggerStatus.FAILED))
        # The endpoint is at its in-flight cap: look again later, not all at once.
        wait_s = self.policy.busy_delay_s * random.uniform(1, 3)
        return Later(now + timedelta(seconds=wait_s))

    def record(
        self,
        claim: Claimed,
        outcome: Outcome,
        started_at: datetime,
        retry_in_s: float,
        now: datetime,
    ) -> float | None:
        """Record an attempt and its consequences; the delay before the next attempt, or
        None when the trigger is settled (delivered or failed)."""
        result = outcome.result
        retry = result is AttemptResult.RETRY and claim.attempt < self.policy.max_attempts
        if result is AttemptResult.DELIVERED:
            status = TriggerStatus.DELIVERED
        elif retry:
            status = TriggerStatus.RETRYING
        else:
            status = TriggerStatus.FAILED
        error = outcome.error
        if result is AttemptResult.RETRY and not retry:
            error = f"{error}; gave up after {claim.attempt} attempts"
        automation = claim.automation
        with writing(self.engine) as conn:
            conn.execute(
                delivery_attempts.insert().values(
                    trigger_id=claim.trigger_id,
                    attempt=claim.attempt,
                    started_at=started_at,
                    latency_ms=outcome.latency_ms,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    result=str(result),
                )
            )
            current = conn.execute(
                update(trigger_deliveries)
                .where(
                    # Only while this claim is the trigger's latest: a copy whose lease
                    # ran out must not overwrite what a newer attempt recorded.
                    trigger_deliveries.c.id == claim.trigger_id,
                    trigger_deliveries.c.attempts == claim.attempt,
                    trigger_deliveries.c.status.in_(OPEN),
                )
                .values(
                    status=str(status),
                    lease_until=None,
                    next_attempt_at=now + timedelta(seconds=retry_in_s) if retry else None,
                    last_status_code=outcome.status_code,
                    last_error=error,
                    updated_at=now,
                    delivered_at=now if status is TriggerStatus.DELIVERED else None,
                )
            )
            if current.rowcount == 0:
                return None  # superseded: the attempt is on record, its verdict is not
            if result is AttemptResult.DELIVERED:
                if claim.failing:  # otherwise nothing to write (and no row to lock)
                    conn.execute(
                        update(automations)
                        .where(automations.c.id == automation.id)
                        .values(failing_since=None)
                    )
            elif result is AttemptResult.GONE:
                disable_automation(conn, automation.id, "the endpoint answered 410 Gone", now)
            else:
                self._note_failure(conn, automation.id, now)
        return retry_in_s if retry else None

    def stuck(self, now: datetime, idle_s: float, limit: int) -> list[tuple[str, str]]:
        """Open triggers nobody has touched for ``idle_s`` (their task message was lost:
        docs/reliability.md #1), marked as touched now; the caller publishes them again. A
        trigger merely waiting in a long queue gets at most one extra message per
        ``idle_s``, which its claim makes harmless."""
        oldest = now - timedelta(seconds=idle_s)
        with writing(self.engine) as conn:
            found = [
                (row.id, row.automation_id)
                for row in conn.execute(
                    select(trigger_deliveries.c.id, trigger_deliveries.c.automation_id)
                    .where(
                        trigger_deliveries.c.status.in_(OPEN),
                        trigger_deliveries.c.next_attempt_at < oldest,
                        or_(
                            trigger_deliveries.c.lease_until.is_(None),
                            trigger_deliveries.c.lease_until < now,
                        ),
                    )
                    .order_by(trigger_deliveries.c.next_attempt_at)
                    .limit(limit)
                )
            ]
            if found:
                conn.execute(
                    update(trigger_deliveries)
                    .where(trigger_deliveries.c.id.in_([trigger for trigger, _ in found]))
                    .values(next_attempt_at=now, updated_at=now)
                )
        return found

    def _note_failure(self, conn: Any, automation_id: str, now: datetime) -> None:
        conn.execute(
            update(automations)
            .where(automations.c.id == automation_id, automations.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        since = conn.execute(
            select(automations.c.failing_since).where(automations.c.id == automation_id)
        ).scalar_one()
        failing_s = (now - as_utc(since)).total_seconds()
        if failing_s >= self.policy.disable_after_s:
            disable_automation(
                conn,
                automation_id,
                f"every attempt failed since {as_utc(since).isoformat()} "
                f"(over {int(self.policy.disable_after_s)} s)",
                now,
            )

    @staticmethod
    def _close(
        conn: Any, trigger_id: str, status: TriggerStatus, now: datetime, error: str
    ) -> None:
        conn.execute(
            update(trigger_deliveries)
            .where(trigger_deliveries.c.id == trigger_id)
            .values(
                status=str(status),
                lease_until=None,
                next_attempt_at=None,
                last_error=error,
                updated_at=now,
            )
        )
