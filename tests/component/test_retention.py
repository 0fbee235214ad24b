"""Purging by age in a real database (each backend): what goes with an old event, what
stays, open and leased triggers, the bounded transactions; the retention's cutoffs and its
Redis lock. Purging beside a running stack is in ``tests/e2e/test_retention_e2e.py``."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import Engine, Table, func, select, update

from sluice.actions import Action
from sluice.ops.retention import PurgeReport, purge_before
from sluice.ops.retention_sweep import SweepLock, retention_cutoffs, sweep_retention
from sluice.producer.events import Event, EventKind
from sluice.rules import Reason, Verdict
from sluice.rules.decisions import Decision
from sluice.store.automations import add_automation
from sluice.store.engine import writing
from sluice.store.schema import (
    delivery_attempts,
    events,
    outcomes,
    repeats,
    trigger_deliveries,
)
from sluice.store.workspaces import configure_workspace, create_workspace
from sluice.worker.ingest.store import EventStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
CUTOFF = NOW - timedelta(days=30)
HOOK = "http://127.0.0.1:9/hook"


def accepted(ws: str, at: datetime, name: str = "Signed Up") -> Decision:
    event = Event(workspace_id=ws, kind=EventKind.CUSTOM, name=name, user_id="u1", timestamp=at)
    return Decision(ws, event.message_id, Verdict.accept(), event)


def discarded(ws: str) -> Decision:
    return Decision(ws, uuid.uuid4().hex, Verdict.reject(Reason.INVALID, "no name"), raw={})


def store(engine: Engine) -> EventStore:
    return EventStore(engine, trigger_max_age_s=10 * 365 * 86_400)  # old events fire too


def count(engine: Engine, table: Table, **where: object) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def attempt_rows(engine: Engine, ws: str) -> int:
    query = (
        select(func.count())
        .select_from(delivery_attempts.join(trigger_deliveries))
        .where(trigger_deliveries.c.workspace_id == ws)
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def add_attempts(engine: Engine, ws: str) -> None:
    """One delivered attempt for every trigger of ``ws``."""
    with writing(engine) as conn:
        ids = conn.execute(
            select(trigger_deliveries.c.id).where(trigger_deliveries.c.workspace_id == ws)
        ).scalars()
        rows = [
            {
                "trigger_id": trigger_id,
                "attempt": 1,
                "started_at": NOW,
                "latency_ms": 3,
                "status_code": 200,
                "result": "delivered",
            }
            for trigger_id in ids
        ]
        if rows:
            conn.execute(delivery_attempts.insert(), rows)
        conn.execute(
            update(trigger_deliveries)
            .where(trigger_deliveries.c.workspace_id == ws)
            .values(status="delivered", delivered_at=NOW)
        )


def test_a_purge_removes_old_events_with_all_their_rows_and_nothing_else(engine: Engine) -> None:
    ws = create_workspace(engine, "purged").workspace_id
    other = create_workspace(engine, "other").workspace_id
    add_automation(
        engine, ws, "Signed Up", Action.WEBHOOK, target=HOOK, allow_private_webhooks=True
    )
    old = [accepted(ws, OLD + timedelta(seconds=i)) for i in range(25)]
    new = [accepted(ws, NOW - timedelta(days=1)) for _ in range(5)]
    elsewhere = [accepted(other, OLD) for _ in range(5)]
    rejected_before = [discarded(ws) for _ in range(4)]
    store(engine).record_batch("b-old", [*old, *rejected_before], OLD)
    store(engine).record_batch("b-new", new, NOW)
    store(engine).record_batch("b-other", elsewhere, OLD)
    store(engine).record_batch("b-again", [replace_batch(old[0])], NOW)  # a repeat
    rejected_after = [discarded(ws) for _ in range(3)]
    store(engine).record_batch("b-late", rejected_after, NOW)
    add_attempts(engine, ws)
    assert count(engine, trigger_deliveries, workspace_id=ws) == 30
    assert count(engine, repeats, workspace_id=ws) == 1

    ticks: list[int] = []

    def tick() -> bool:
        ticks.append(1)
        return True

    report = purge_before(engine, ws, CUTOFF, batch_events=10, between_batches=tick)

    assert dict(report.removed) == {
        "events": 25,
        "outcomes": 25 + 4,  # the discarded ones by when they were decided
        "repeats": 1,
        "trigger_deliveries": 25,
        "delivery_attempts": 25,
    }
    assert report.transactions >= 3  # 10 events each
    assert len(ticks) > report.transactions  # after each, and after each outcome read
    assert report.open_triggers_deleted == 0 and not report.stopped
    with engine.connect() as conn:
        left = set(
            conn.execute(select(events.c.message_id).where(events.c.workspace_id == ws)).scalars()
        )
        decided = set(
            conn.execute(
                select(outcomes.c.message_id).where(outcomes.c.workspace_id == ws)
            ).scalars()
        )
    assert left == {d.message_id for d in new}
    assert decided == {d.message_id for d in [*new, *rejected_after]}
    assert count(engine, trigger_deliveries, workspace_id=ws) == 5
    assert attempt_rows(engine, ws) == 5
    assert count(engine, events, workspace_id=other) == 5
    assert count(engine, outcomes, workspace_id=other) == 5


def replace_batch(decision: Decision) -> Decision:
    return Decision(
        decision.workspace_id,
        decision.message_id,
        Verdict.discard(Reason.DUPLICATE_MESSAGE),
        decision.event,
    )


def test_open_triggers_go_with_their_event_and_one_under_an_attempt_keeps_it(
    engine: Engine,
) -> None:
    ws = create_workspace(engine, "open triggers").workspace_id
    add_automation(
        engine, ws, "Signed Up", Action.WEBHOOK, target=HOOK, allow_private_webhooks=True
    )
    pending, leased = accepted(ws, OLD), accepted(ws, OLD)
    store(engine).record_batch("b1", [pending, leased], OLD)
    lease_until = datetime.now(UTC) + timedelta(seconds=60)
    with writing(engine) as conn:
        conn.execute(
            update(trigger_deliveries)
            .where(trigger_deliveries.c.message_id == leased.message_id)
            .values(lease_until=lease_until, attempts=1)
        )

    first = purge_before(engine, ws, CUTOFF)
    assert (first.removed["events"], first.removed["trigger_deliveries"]) == (1, 1)
    assert (first.open_triggers_deleted, first.events_kept_for_attempts) == (1, 1)
    with engine.connect() as conn:
        kept = conn.execute(
            select(events.c.message_id).where(events.c.workspace_id == ws)
        ).scalars()
        assert list(kept) == [leased.message_id]

    with writing(engine) as conn:  # the attempt was recorded: its trigger is settled
        conn.execute(
            update(trigger_deliveries)
            .where(trigger_deliveries.c.message_id == leased.message_id)
            .values(lease_until=None, status="delivered")
        )
    second = purge_before(engine, ws, CUTOFF)
    assert (second.removed["events"], second.events_kept_for_attempts) == (1, 0)
    assert count(engine, events, workspace_id=ws) == 0
    assert count(engine, trigger_deliveries, workspace_id=ws) == 0


def test_a_purge_asked_to_stop_keeps_every_remaining_event_whole(engine: Engine) -> None:
    ws = create_workspace(engine, "stopped").workspace_id
    old = [accepted(ws, OLD + timedelta(seconds=i)) for i in range(30)]
    store(engine).record_batch("b1", old, OLD)

    report = purge_before(engine, ws, CUTOFF, batch_events=10, between_batches=lambda: False)

    assert report.stopped and report.transactions == 1
    assert dict(report.removed) == {"events": 10, "outcomes": 10, "repeats": 0}
    with engine.connect() as conn:
        left = set(
            conn.execute(select(events.c.message_id).where(events.c.workspace_id == ws)).scalars()
        )
        decided = set(
            conn.execute(
                select(outcomes.c.message_id).where(outcomes.c.workspace_id == ws)
            ).scalars()
        )
    assert left == decided == {d.message_id for d in old[10:]}  # the oldest went first


def test_retention_cutoffs_take_the_workspace_setting_over_the_default(engine: Engine) -> None:
    default = create_workspace(engine, "default").workspace_id
    shorter = create_workspace(engine, "shorter").workspace_id
    forever = create_workspace(engine, "forever").workspace_id
    configure_workspace(engine, shorter, {"retention_days": "7"})
    configure_workspace(engine, forever, {"retention_days": "0"})

    cutoffs = retention_cutoffs(engine, 30, NOW)
    assert cutoffs[default] == NOW - timedelta(days=30)
    assert cutoffs[shorter] == NOW - timedelta(days=7)
    assert forever not in cutoffs

    none_by_default = retention_cutoffs(engine, 0, NOW)
    assert none_by_default[shorter] == NOW - timedelta(days=7)
    assert default not in none_by_default and forever not in none_by_default


def test_one_sweeper_per_interval_and_an_interrupted_one_lets_go(
    engine: Engine, isolated_redis_url: str
) -> None:
    client = redis.Redis.from_url(isolated_redis_url)
    first, second = SweepLock(client), SweepLock(client)
    stop = threading.Event()

    def sweep(lock: SweepLock) -> list[PurgeReport] | None:
        return sweep_retention(
            engine,
            lock,
            default_days=0,
            every_s=600,
            batch_events=100,
            pause_s=0,
            stop=stop,
            now=lambda: NOW,
        )

    assert sweep(first) is not None
    assert sweep(second) is None  # the first holds the interval
    assert not second.extend() and first.extend()
    first.release()
    assert sweep(second) is not None

    ws = create_workspace(engine, "interrupted").workspace_id
    configure_workspace(engine, ws, {"retention_days": "30"})
    store(engine).record_batch("b1", [accepted(ws, OLD) for _ in range(3)], OLD)
    second.release()
    stop.set()  # the sweep stops after its first transaction and gives the lock up
    reports = sweep(first)
    assert reports is not None and reports[-1].stopped
    assert first.acquire(600)
