"""Erasure against a real database (each backend) and Redis, around a trigger a deliverer
holds under lease: the erasure waits for the deliverer's record (which must still find its
trigger row), and a run that gives up leaves what a second run needs to finish. Rows are
made by the worker's own store and lease code. End to end: ``test_erasure_e2e.py``."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select, update

from sluice.actions import AttemptResult, Outcome
from sluice.delivery.leases import Attempted, Claimed, DeliveryPolicy, TriggerStore
from sluice.ops.erasure import ErasureIncompleteError, ErasureReport, erase_contact
from sluice.producer.events import Event, EventKind, utc_now
from sluice.rules import Verdict
from sluice.rules.decisions import Decision
from sluice.rules.users import UserPolicy
from sluice.store.schema import contacts, erasures, events, trigger_deliveries
from sluice.store.workspaces import create_workspace
from sluice.worker.ingest.store import EventStore
from tests.component.test_triggers import webhook_on

POLICY = DeliveryPolicy(lease_s=60, max_attempts=3, disable_after_s=3600)


def person_with_a_leased_trigger(engine: Engine) -> tuple[str, str, str, Claimed]:
    """A workspace, a contact (user id and email) with a login and an event that fired a
    webhook, and that webhook's trigger leased as a deliverer leases it."""
    ws = create_workspace(engine, "erasure").workspace_id
    tag = uuid.uuid4().hex[:8]
    user_id, email = f"u-{tag}", f"p-{tag}@example.com"
    hook = webhook_on(engine, ws)
    login = Event(workspace_id=ws, kind=EventKind.LOGIN, name="login", user_id=user_id, email=email)
    signed_up = Event(workspace_id=ws, kind=EventKind.CUSTOM, name="Signed Up", user_id=user_id)
    EventStore(engine).record_batch(
        f"b-{tag}",
        [
            Decision(ws, login.message_id, Verdict.accept(), login, user_policy=UserPolicy.CREATE),
            Decision(ws, signed_up.message_id, Verdict.accept(), signed_up),
        ],
        utc_now(),
    )
    claimed = TriggerStore(engine, POLICY).claim_due(utc_now(), 10_000, per_automation=10, held={})
    (mine,) = [c for c in claimed if c.automation.id == hook.id]
    return ws, user_id, email, mine


def delivered(claim: Claimed) -> Attempted:
    return Attempted(claim, Outcome(AttemptResult.DELIVERED, 5, status_code=200), utc_now(), 0.0)


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_erasure_waits_for_a_leased_trigger_and_the_record_still_lands(
    engine: Engine, isolated_redis_url: str
) -> None:
    ws, user_id, _, claim = person_with_a_leased_trigger(engine)
    message_id = claim.event["message_id"]
    results: list[ErasureReport | BaseException] = []

    def erase() -> None:
        try:
            client = redis.Redis.from_url(isolated_redis_url)
            results.append(
                erase_contact(engine, client, ws, "user_id", user_id, requested_by="test")
            )
        except BaseException as exc:
            results.append(exc)

    eraser = threading.Thread(target=erase, daemon=True)
    eraser.start()
    # The login goes at once; the event whose trigger is leased stays, with the trigger.
    wait_for(lambda: count(engine, events, events.c.workspace_id == ws) == 1, "the first pass")
    assert count(engine, events, events.c.message_id == message_id) == 1
    time.sleep(1.0)  # the erasure keeps waiting while the lease holds (not a speed check)
    assert eraser.is_alive() and not results

    # The deliverer's record finds its trigger row (an attempt row refers to it).
    TriggerStore(engine, POLICY).record([delivered(claim)], utc_now())
    eraser.join(timeout=30)
    [report] = results
    assert isinstance(report, ErasureReport), report
    assert {k: report.removed[k] for k in ("contacts", "events", "trigger_deliveries")} == {
        "contacts": 1,
        "events": 2,
        "trigger_deliveries": 1,
    }
    assert report.removed["delivery_attempts"] == 1
    assert count(engine, trigger_deliveries, trigger_deliveries.c.workspace_id == ws) == 0
    assert count(engine, contacts, contacts.c.workspace_id == ws) == 0


def test_an_erasure_that_gives_up_is_finished_by_a_second_run_with_the_other_identifier(
    engine: Engine, isolated_redis_url: str
) -> None:
    ws, user_id, email, claim = person_with_a_leased_trigger(engine)
    client = redis.Redis.from_url(isolated_redis_url)
    with pytest.raises(ErasureIncompleteError, match="run the same command again"):
        erase_contact(engine, client, ws, "user_id", user_id, requested_by="t", lease_wait_s=0.3)
    # The contact, which links the user id to the email, goes last: it is still there.
    assert count(engine, contacts, contacts.c.workspace_id == ws) == 1
    assert count(engine, erasures, erasures.c.workspace_id == ws) == 0

    TriggerStore(engine, POLICY).record([delivered(claim)], utc_now())
    report = erase_contact(engine, client, ws, "email", email.upper(), requested_by="t")
    assert (report.removed["events"], report.removed["trigger_deliveries"]) == (1, 1)
    assert count(engine, events, events.c.workspace_id == ws) == 0
    assert count(engine, contacts, contacts.c.workspace_id == ws) == 0
    assert count(engine, erasures, erasures.c.workspace_id == ws) == 1


def test_an_unknown_workspace_is_refused(engine: Engine, isolated_redis_url: str) -> None:
    client = redis.Redis.from_url(isolated_redis_url)
    with pytest.raises(LookupError, match="no workspace"):
        erase_contact(engine, client, "no-such-workspace", "email", "a@b.c", requested_by="t")


def lock_waiters(engine: Engine) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(query).scalar_one())


def test_an_erasure_locks_triggers_in_id_order_as_the_deliverers_do(
    engine: Engine, isolated_redis_url: str
) -> None:
    """A deliverer's record locks its triggers in id order (``TriggerStore.record``). An
    erasure that locked them in another order would deadlock with it; in id order it waits."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time: no row locks")
    ws = create_workspace(engine, "erasure lock order").workspace_id
    tag = uuid.uuid4().hex[:8]
    webhook_on(engine, ws)
    made = [
        Event(
            workspace_id=ws,
            kind=EventKind.CUSTOM,
            name="Signed Up",
            user_id=f"u-{tag}",
            message_id=f"m{n}-{tag}",
        )
        for n in (1, 2)
    ]
    EventStore(engine).record_batch(
        f"b-{tag}", [Decision(ws, e.message_id, Verdict.accept(), e) for e in made], utc_now()
    )
    # Read by message id (and in insertion order), the trigger with the larger id comes first.
    high, low = f"trg_z{tag}", f"trg_a{tag}"
    with engine.begin() as conn:
        for event, trigger_id in ((made[0], high), (made[1], low)):
            conn.execute(
                update(trigger_deliveries)
                .where(trigger_deliveries.c.message_id == event.message_id)
                .values(id=trigger_id)
            )
    results: list[ErasureReport | BaseException] = []

    def erase() -> None:
        try:
            client = redis.Redis.from_url(isolated_redis_url)
            results.append(
                erase_contact(engine, client, ws, "user_id", f"u-{tag}", requested_by="t")
            )
        except BaseException as exc:
            results.append(exc)

    def lock(conn: Any, trigger_id: str) -> None:
        query = select(trigger_deliveries.c.id).where(trigger_deliveries.c.id == trigger_id)
        conn.execute(query.with_for_update())

    eraser = threading.Thread(target=erase, daemon=True)
    with engine.connect() as deliverer:
        lock(deliverer, low)  # a record under way, in id order: the lower id first
        eraser.start()
        wait_for(lambda: lock_waiters(engine) > 0 or not eraser.is_alive(), "the erasure to wait")
        lock(deliverer, high)  # a deadlock here if the erasure held it
        deliverer.rollback()
    eraser.join(timeout=30)
    [report] = results
    assert isinstance(report, ErasureReport), report
    assert (report.removed["events"], report.removed["trigger_deliveries"]) == (2, 2)


def test_a_record_with_claims_given_back_locks_every_trigger_in_id_order(engine: Engine) -> None:
    """A deliverer that stops records its attempts and gives back its unstarted claims in one
    transaction: all their triggers are locked in id order, as an erasure or a purge locks
    them, whichever of the two kinds holds the lower id."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time: no row locks")
    ws = create_workspace(engine, "record lock order").workspace_id
    hook = webhook_on(engine, ws)
    made = [
        Event(workspace_id=ws, kind=EventKind.CUSTOM, name="Signed Up", user_id=f"u{n}")
        for n in range(2)
    ]
    EventStore(engine).record_batch(
        f"b-{uuid.uuid4().hex[:8]}",
        [Decision(ws, e.message_id, Verdict.accept(), e) for e in made],
        utc_now(),
    )
    claimed = TriggerStore(engine, POLICY).claim_due(utc_now(), 10_000, per_automation=10, held={})
    low, high = sorted(
        (c for c in claimed if c.automation.id == hook.id), key=lambda c: c.trigger_id
    )
    errors: list[BaseException] = []

    def record() -> None:
        try:
            TriggerStore(engine, POLICY).record([delivered(low)], utc_now(), unstarted=[high])
        except BaseException as exc:
            errors.append(exc)

    def lock(conn: Any, trigger_id: str) -> None:
        query = select(trigger_deliveries.c.id).where(trigger_deliveries.c.id == trigger_id)
        conn.execute(query.with_for_update())

    recorder = threading.Thread(target=record, daemon=True)
    with engine.connect() as eraser:
        lock(eraser, low.trigger_id)  # an erasure under way, in id order
        recorder.start()
        wait_for(lambda: lock_waiters(engine) > 0 or not recorder.is_alive(), "the record to wait")
        lock(eraser, high.trigger_id)  # a deadlock here if the record held it
        eraser.rollback()
    recorder.join(timeout=30)
    assert not errors and not recorder.is_alive(), errors
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(trigger_deliveries.c.id, trigger_deliveries.c.status).where(
                    trigger_deliveries.c.workspace_id == ws
                )
            ).all()
        )
    assert rows == {low.trigger_id: "delivered", high.trigger_id: "pending"}
