"""Trigger deliveries in the database: claiming one for an attempt, recording the attempt,
and what the API and the CLI show of them.

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
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, or_, select, update

from producer.events import as_utc
from worker.automations import Automation, AutomationStatus, automation_of, disable_automation
from worker.db import writing
from worker.schema import automations, delivery_attempts, events, trigger_deliveries

EARLY_TOLERANCE_S = 0.05


class TriggerStatus(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN = (str(TriggerStatus.PENDING), str(TriggerStatus.RETRYING))


class AttemptResult(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # 5xx, 429, timeout, connection error
    FAILED = "failed"  # other 4xx, refused URL: retrying would not help
    GONE = "gone"  # 410: the endpoint asks to be disabled


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


@dataclass(frozen=True, slots=True)
class Later:
    """Not now: the trigger is due at ``at`` (backoff, a running attempt, or a busy endpoint)."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Settled:
    status: str


@dataclass(frozen=True, slots=True)
class Outcome:
    result: AttemptResult
    latency_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


class TriggerStore:
    def __init__(self, engine: Engine, policy: DeliveryPolicy) -> None:
        self.engine = engine
        self.policy = policy

    def claim(self, trigger_id: str, now: datetime) -> Claimed | Later | Settled:
        policy = self.policy
        with writing(self.engine) as conn:
            row = conn.execute(
                select(trigger_deliveries)
                .where(trigger_deliveries.c.id == trigger_id)
                .with_for_update(key_share=True)
            ).first()
            if row is None:
                return Settled("missing")
            if row.status not in OPEN:
                return Settled(row.status)
            automation = automation_of(
                conn.execute(
                    select(automations)
                    .where(automations.c.id == row.automation_id)
                    # NO KEY UPDATE: does not wait for batches inserting triggers (FK)
                    .with_for_update(key_share=True)
                ).one()
            )
            if automation.status is AutomationStatus.DISABLED:
                self._close(
                    conn,
                    trigger_id,
                    TriggerStatus.CANCELLED,
                    now,
                    f"automation disabled: {automation.disabled_reason}",
                )
                return Settled(str(TriggerStatus.CANCELLED))
            due = max(as_utc(t) for t in (row.next_attempt_at, row.lease_until, now) if t)
            if due > now + timedelta(seconds=EARLY_TOLERANCE_S):
                return Later(due)
            if row.attempts >= policy.max_attempts:
                self._close(
                    conn,
                    trigger_id,
                    TriggerStatus.FAILED,
                    now,
                    f"gave up after {row.attempts} attempts (the last did not finish)",
                )
                return Settled(str(TriggerStatus.FAILED))
            in_flight = conn.execute(
                select(func.count()).where(
                    trigger_deliveries.c.automation_id == automation.id,
                    trigger_deliveries.c.lease_until > now,
                )
            ).scalar_one()
            if in_flight >= policy.max_in_flight:  # look again later, not all at once
                wait_s = policy.busy_delay_s * random.uniform(1, 3)
                return Later(now + timedelta(seconds=wait_s))
            event = conn.execute(
                select(events).where(
                    events.c.workspace_id == row.workspace_id,
                    events.c.message_id == row.message_id,
                )
            ).one()
            conn.execute(
                update(trigger_deliveries)
                .where(trigger_deliveries.c.id == trigger_id)
                .values(
                    attempts=row.attempts + 1,
                    lease_until=now + timedelta(seconds=policy.lease_s),
                    updated_at=now,
                )
            )
        return Claimed(
            trigger_id, row.attempts + 1, automation, dict(event._mapping), as_utc(row.created_at)
        )

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

    def stuck(self, now: datetime, idle_s: float, limit: int) -> list[str]:
        """Open triggers nobody has touched for ``idle_s`` (their task message was lost:
        RELIABILITY #1), marked as touched now; the caller publishes them again. A
        trigger merely waiting in a long queue gets at most one extra message per
        ``idle_s``, which its claim makes harmless."""
        oldest = now - timedelta(seconds=idle_s)
        with writing(self.engine) as conn:
            found = list(
                conn.execute(
                    select(trigger_deliveries.c.id)
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
                ).scalars()
            )
            if found:
                conn.execute(
                    update(trigger_deliveries)
                    .where(trigger_deliveries.c.id.in_(found))
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


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def _trigger_view(row: Any) -> dict[str, Any]:
    return {
        "trigger_id": row.id,
        "automation_id": row.automation_id,
        "on": row.event_name,
        "action": row.action,
        "target": row.target,
        "status": row.status,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "next_attempt_at": _iso(row.next_attempt_at),
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
    }


def triggers_of(engine: Engine, workspace_id: str, message_id: str) -> list[dict[str, Any]]:
    """The triggers an event fired, with their state (for ``GET /v1/events/{id}``)."""
    query = (
        select(trigger_deliveries, automations.c.event_name, automations.c.target)
        .join(automations, automations.c.id == trigger_deliveries.c.automation_id)
        .where(
            trigger_deliveries.c.workspace_id == workspace_id,
            trigger_deliveries.c.message_id == message_id,
        )
        .order_by(trigger_deliveries.c.created_at, trigger_deliveries.c.id)
    )
    with engine.connect() as conn:
        return [_trigger_view(row) for row in conn.execute(query)]


def recent_attempts(
    engine: Engine, workspace_id: str | None, automation_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The newest delivery attempts (for ``sluice deliveries``)."""
    query = (
        select(
            delivery_attempts,
            trigger_deliveries.c.workspace_id,
            trigger_deliveries.c.message_id,
            trigger_deliveries.c.automation_id,
            trigger_deliveries.c.status.label("trigger_status"),
        )
        .join(trigger_deliveries, trigger_deliveries.c.id == delivery_attempts.c.trigger_id)
        .order_by(delivery_attempts.c.started_at.desc(), delivery_attempts.c.id.desc())
        .limit(limit)
    )
    if workspace_id is not None:
        query = query.where(trigger_deliveries.c.workspace_id == workspace_id)
    if automation_id is not None:
        query = query.where(trigger_deliveries.c.automation_id == automation_id)
    with engine.connect() as conn:
        return [
            {
                "started_at": as_utc(row.started_at).isoformat(),
                "trigger_id": row.trigger_id,
                "workspace_id": row.workspace_id,
                "automation_id": row.automation_id,
                "message_id": row.message_id,
                "attempt": row.attempt,
                "result": row.result,
                "status_code": row.status_code,
                "latency_ms": row.latency_ms,
                "error": row.error,
                "trigger_status": row.trigger_status,
            }
            for row in conn.execute(query)
        ]
