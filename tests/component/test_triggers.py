"""Fan-out and delivery, piece by piece: matching, URL safety, signatures, answer
classification, backoff, and the trigger rows and leases in a real database (each
backend). The end-to-end behaviour is in ``test_triggers_e2e.py``."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, delete, select
from standardwebhooks import Webhook, WebhookVerificationError

from sluice.actions import Action, Attempt, AttemptResult, Outcome, Target
from sluice.actions.webhook import (
    WebhookAction,
    classify,
    retry_after_s,
    signed_headers,
)
from sluice.actions.webhook_client import open_session
from sluice.actions.webhook_urls import (
    UnresolvableHostError,
    UnsafeWebhookUrlError,
    check_webhook_url,
)
from sluice.cli.worker_app import create_app
from sluice.delivery.deliverer import Deliverer, trigger_retry_delay_s
from sluice.delivery.leases import Attempted, Claimed, DeliveryPolicy, TriggerStore
from sluice.producer.events import Event, EventKind, utc_now
from sluice.rules import Reason, Verdict
from sluice.rules.decisions import Decision
from sluice.settings import Settings
from sluice.store.automations import (
    Automation,
    AutomationStatus,
    add_automation,
    disable_automation,
)
from sluice.store.engine import writing
from sluice.store.schema import automations, delivery_attempts, trigger_deliveries
from sluice.store.workspaces import create_workspace
from sluice.wakeups import listen_for_wakeups, wake_deliverers
from sluice.worker.ingest.store import EventStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def event(name: str = "Signed Up", **properties: Any) -> Event:
    return Event(
        workspace_id="ws", kind=EventKind.CUSTOM, name=name, user_id="u1", properties=properties
    )


@pytest.mark.parametrize(
    ("filters", "properties", "fires"),
    [
        ({}, {}, True),
        ({"plan": "pro"}, {"plan": "pro"}, True),
        ({"plan": "pro"}, {"plan": "free"}, False),
        ({"plan": "pro"}, {}, False),
        ({"amount": "10"}, {"amount": 10}, True),
        ({"amount": "10"}, {"amount": 10.5}, False),
        ({"vip": "true"}, {"vip": True}, True),
        ({"vip": "true"}, {"vip": "true"}, True),
        ({"gone": "null"}, {"gone": None}, True),
        ({"plan": "pro", "seats": "2"}, {"plan": "pro", "seats": 3}, False),
    ],
)
def test_filters_are_equalities_on_properties(
    filters: dict[str, str], properties: dict[str, Any], fires: bool
) -> None:
    automation = Automation("au_1", "ws", "Signed Up", Action.BULLETIN, filters=filters)
    assert automation.matches(event(**properties)) is fires
    assert not automation.matches(event("Logged In", **properties))


def resolver_to(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "::10.0.0.1",  # IPv4-compatible
        "224.0.0.1",
    ],
)
def test_webhooks_to_private_addresses_are_refused(address: str) -> None:
    with pytest.raises(UnsafeWebhookUrlError, match="SLUICE_ALLOW_PRIVATE_WEBHOOKS"):
        check_webhook_url(
            "https://hooks.example/x", allow_private=False, resolver=resolver_to(address)
        )
    check_webhook_url("https://hooks.example/x", allow_private=True, resolver=resolver_to(address))


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(UnsafeWebhookUrlError):
        check_webhook_url(
            "https://hooks.example/x",
            allow_private=False,
            resolver=resolver_to("93.184.216.34", "10.0.0.7"),
        )
    check_webhook_url(
        "https://hooks.example/x", allow_private=False, resolver=resolver_to("93.184.216.34")
    )


def test_localhost_is_refused_through_the_real_resolver() -> None:
    with pytest.raises(UnsafeWebhookUrlError, match="loopback"):
        check_webhook_url("http://localhost:8080/hook", allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/x",
        "hooks.example/x",
        "http:///x",
        "https://u:p@hooks.example/x",
        "http://h:99999/",
        "http://hooks.example/a\tb",
        "http://hooks.example/\x7f",
    ],
)
def test_malformed_webhook_urls_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrlError):
        check_webhook_url(url, allow_private=True)


def test_an_unresolvable_host_is_its_own_error() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(UnresolvableHostError):
        check_webhook_url("https://nowhere.example/x", allow_private=False, resolver=fails)


def test_signature_verifies_with_standardwebhooks_and_fails_when_tampered() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"event.triggered","data":{"x":1}}'
    headers = signed_headers(secret, "trg_1", body, utc_now())
    assert Webhook(secret).verify(body, headers) == {"type": "event.triggered", "data": {"x": 1}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"1", b"2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "trg_2"})


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (200, AttemptResult.DELIVERED),
        (204, AttemptResult.DELIVERED),
        (301, AttemptResult.FAILED),
        (400, AttemptResult.FAILED),
        (401, AttemptResult.FAILED),
        (404, AttemptResult.FAILED),
        (408, AttemptResult.RETRY),
        (410, AttemptResult.GONE),
        (429, AttemptResult.RETRY),
        (500, AttemptResult.RETRY),
        (503, AttemptResult.RETRY),
    ],
)
def test_answers_are_classified(status: int, result: AttemptResult) -> None:
    assert classify(status) is result


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("soon", None),
        ("-3", None),
        ("²", None),
        ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, NOW) == seconds


def test_backoff_grows_with_jitter_and_never_passes_the_cap() -> None:
    for attempt in range(1, 40):
        delay = trigger_retry_delay_s(attempt, None, 5.0, 450.0)
        ceiling = min(450.0, 5.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert trigger_retry_delay_s(1, 30.0, 5.0, 450.0) == 30.0  # Retry-After wins over the backoff
    assert trigger_retry_delay_s(1, 10_000.0, 5.0, 450.0) == 10_000.0  # even past the cap
    assert trigger_retry_delay_s(1, 10**9, 5.0, 450.0) == 86_400.0  # up to a day


# The database side: trigger rows in the batch transaction, and claims.


def decision(ws: str, e: Event, verdict: Verdict | None = None, **kw: object) -> Decision:
    e = e.model_copy(update={"workspace_id": ws})
    return Decision(ws, e.message_id, verdict or Verdict.accept(), e, **kw)  # type: ignore[arg-type]


def trigger_rows(engine: Engine, ws: str) -> list[tuple[str, str, str]]:
    query = select(
        trigger_deliveries.c.message_id,
        trigger_deliveries.c.automation_id,
        trigger_deliveries.c.status,
    ).where(trigger_deliveries.c.workspace_id == ws)
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(query))  # type: ignore[misc]


def webhook_on(engine: Engine, ws: str) -> Automation:
    """A webhook automation on "Signed Up" (to a port nothing listens on)."""
    return add_automation(
        engine,
        ws,
        "Signed Up",
        Action.WEBHOOK,
        target="http://127.0.0.1:9/h",
        allow_private_webhooks=True,
    )


def test_triggers_are_created_once_for_accepted_fresh_events_only(engine: Engine) -> None:
    ws = create_workspace(engine, "fan-out").workspace_id
    hook = webhook_on(engine, ws)
    bulletin = add_automation(engine, ws, "Signed Up", Action.BULLETIN, filters={"plan": "pro"})
    store = EventStore(engine, trigger_max_age_s=7200)
    now = utc_now()
    fresh = decision(ws, event(plan="pro"))
    free = decision(ws, event(plan="free"))
    discarded = decision(ws, event(plan="pro"), Verdict.discard(Reason.THROTTLED, "x"))
    bot = decision(ws, event(plan="pro"), Verdict(Verdict.accept().status, Reason.BOT), bot=True)
    stale_event = event(plan="pro").model_copy(update={"timestamp": now - timedelta(hours=3)})
    stale = decision(ws, stale_event)

    recorded = store.record_batch("b1", [fresh, free, discarded, bot, stale], now)

    assert trigger_rows(engine, ws) == sorted(
        [
            (fresh.message_id, hook.id, "pending"),
            (fresh.message_id, bulletin.id, "delivered"),  # counted, nothing to deliver
            (free.message_id, hook.id, "pending"),
        ]
    )
    assert len(recorded.triggers) == 2  # the webhooks, for the deliverers
    final = {d.message_id: d for d in recorded.decisions}
    assert final[stale.message_id].verdict.status == "accepted"
    assert "2 matching automation(s)" in (final[stale.message_id].verdict.detail or "")
    assert final[fresh.message_id].verdict.detail is None

    # The same batch again (a redelivery) replays: no new rows.
    replayed = [replace(d, replayed=True) for d in recorded.decisions]
    again = store.record_batch("b1", replayed, now)
    assert again.triggers == []
    assert len(trigger_rows(engine, ws)) == 3


POLICY = DeliveryPolicy(lease_s=60, max_attempts=3, disable_after_s=3600)


def pending_triggers(engine: Engine, count: int) -> tuple[str, list[str]]:
    ws = create_workspace(engine, "claims").workspace_id
    hook = webhook_on(engine, ws)
    recorded = EventStore(engine).record_batch(
        f"b-{ws}", [decision(ws, event()) for _ in range(count)], utc_now()
    )
    assert {automation for _, automation in recorded.triggers} == {hook.id}
    return hook.id, [trigger for trigger, _ in recorded.triggers]


def claim(
    store: TriggerStore, automation_id: str, at: datetime, held: int = 0, room: int = 2
) -> list[Claimed]:
    """What a claim leases of this automation's triggers, with room for ``room`` of them
    less ``held`` (the database is shared with other tests, whose due triggers a claim
    leases too)."""
    claimed = store.claim_due(at, 10_000, per_automation=room, held={automation_id: held})
    return sorted(
        (c for c in claimed if c.automation.id == automation_id), key=lambda c: c.trigger_id
    )


def done(claimed: Claimed, result: AttemptResult, retry_in_s: float = 0.0, **kw: Any) -> Attempted:
    return Attempted(claimed, Outcome(result, 5, **kw), claimed.created_at, retry_in_s)


def trigger_status(engine: Engine, trigger: str) -> str:
    query = select(trigger_deliveries.c.status).where(trigger_deliveries.c.id == trigger)
    with engine.connect() as conn:
        return str(conn.execute(query).scalar_one())


def test_a_claim_is_a_lease_within_the_deliverers_room(engine: Engine) -> None:
    automation_id, triggers = pending_triggers(engine, 3)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    assert claim(store, automation_id, now, held=2) == []  # no room
    first = claim(store, automation_id, now)  # room for 2
    assert len(first) == 2 and {c.attempt for c in first} == {1}
    assert all(c.event["message_id"] and c.event["name"] == "Signed Up" for c in first)
    third = claim(store, automation_id, now, held=1)
    assert [c.trigger_id for c in third] == sorted(set(triggers) - {c.trigger_id for c in first})
    assert claim(store, automation_id, now) == []  # all three are leased

    store.record([done(first[0], AttemptResult.DELIVERED, status_code=200)], now)
    assert trigger_status(engine, first[0].trigger_id) == "delivered"
    # The two never recorded (their deliverer died) come back when their lease ends.
    again = claim(store, automation_id, now + timedelta(seconds=61))
    assert {c.trigger_id for c in again} == set(triggers) - {first[0].trigger_id}
    assert {c.attempt for c in again} == {2}


def test_retries_wait_their_backoff_and_end_after_the_attempt_cap(engine: Engine) -> None:
    automation_id, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    for attempt in (1, 2, 3):
        (claimed,) = claim(store, automation_id, now)
        assert claimed.attempt == attempt
        store.record([done(claimed, AttemptResult.RETRY, 2.0, status_code=503)], now)
        if attempt < 3:
            assert trigger_status(engine, trigger) == "retrying"
            assert claim(store, automation_id, now + timedelta(seconds=1.5)) == []  # backoff
            now += timedelta(seconds=2)
    assert trigger_status(engine, trigger) == "failed"
    assert claim(store, automation_id, now + timedelta(days=1)) == []


def test_a_crashed_last_attempt_counts_and_the_trigger_is_closed(engine: Engine) -> None:
    automation_id, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    for attempt in (1, 2, 3):  # each claim is followed by a crash: nothing is recorded
        (claimed,) = claim(store, automation_id, now)
        assert claimed.attempt == attempt
        now += timedelta(seconds=61)
    assert claim(store, automation_id, now) == []
    assert trigger_status(engine, trigger) == "pending"
    assert sum(store.settle_abandoned(now).values()) >= 1
    assert trigger_status(engine, trigger) == "failed"


def test_failing_for_long_disables_the_automation_and_cancels_the_rest(engine: Engine) -> None:
    automation_id, (first, second) = pending_triggers(engine, 2)
    store = TriggerStore(engine, replace(POLICY, disable_after_s=0))
    now = utc_now()
    (claimed,) = claim(store, automation_id, now, room=1)
    store.record([done(claimed, AttemptResult.FAILED, status_code=404, error="HTTP 404")], now)
    with engine.connect() as conn:
        row = conn.execute(select(automations).where(automations.c.id == automation_id)).one()
    assert row.status == AutomationStatus.DISABLED
    assert row.disabled_reason.startswith("every attempt failed since")
    other = second if claimed.trigger_id == first else first
    assert trigger_status(engine, other) == "cancelled"
    assert claim(store, automation_id, now + timedelta(days=1)) == []


def test_a_410_disables_and_a_success_ends_failing(engine: Engine) -> None:
    automation_id, _ = pending_triggers(engine, 3)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    (failed,) = claim(store, automation_id, now, room=1)
    store.record([done(failed, AttemptResult.RETRY, 1.0, status_code=500)], now)
    (succeeded,) = claim(store, automation_id, now, room=1)
    assert succeeded.failing
    store.record([done(succeeded, AttemptResult.DELIVERED, status_code=200)], now)
    (gone,) = claim(store, automation_id, now, room=1)
    assert not gone.failing
    store.record([done(gone, AttemptResult.GONE, status_code=410)], now)
    with engine.connect() as conn:
        row = conn.execute(select(automations).where(automations.c.id == automation_id)).one()
    assert (row.status, row.disabled_reason) == ("disabled", "the endpoint answered 410 Gone")
    assert trigger_status(engine, failed.trigger_id) == "cancelled"  # it was waiting


def test_disabling_cancels_the_waiting_deliveries_at_once(engine: Engine) -> None:
    automation_id, (one, two) = pending_triggers(engine, 2)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    (under_way,) = claim(store, automation_id, now, room=1)
    waiting = two if under_way.trigger_id == one else one
    with writing(engine) as conn:
        assert disable_automation(conn, automation_id, "by a test", now)
    assert trigger_status(engine, waiting) == "cancelled"
    assert trigger_status(engine, under_way.trigger_id) == "pending"  # it records its own result
    store.record([done(under_way, AttemptResult.RETRY, 1.0, status_code=503)], now)
    assert trigger_status(engine, under_way.trigger_id) == "retrying"
    # Its automation is disabled: no claim takes it, the housekeeping closes it.
    later = now + timedelta(seconds=2)
    assert claim(store, automation_id, later) == []
    store.settle_abandoned(later)
    assert trigger_status(engine, under_way.trigger_id) == "cancelled"


def test_a_superseded_attempt_does_not_overwrite_the_newer_one(engine: Engine) -> None:
    automation_id, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    (slow,) = claim(store, automation_id, now)  # its lease (60 s) runs out before it answers
    later = now + timedelta(seconds=61)
    (newer,) = claim(store, automation_id, later)
    assert newer.attempt == 2
    store.record([done(newer, AttemptResult.DELIVERED, status_code=200)], later)
    store.record([done(slow, AttemptResult.RETRY, 1.0, status_code=503)], later)
    assert trigger_status(engine, trigger) == "delivered"
    query = select(delivery_attempts.c.attempt, delivery_attempts.c.result).where(
        delivery_attempts.c.trigger_id == trigger
    )
    with engine.connect() as conn:
        assert sorted(conn.execute(query).all()) == [(1, "retry"), (2, "delivered")]


def test_a_claim_given_back_is_due_at_once_and_its_attempt_uncounted(engine: Engine) -> None:
    automation_id, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    (claimed,) = claim(store, automation_id, now)
    store.record([], now, unstarted=[claimed])
    later = now + timedelta(seconds=1)
    (again,) = claim(store, automation_id, later)
    assert (again.trigger_id, again.attempt) == (trigger, 1)
    store.record([], later, unstarted=[claimed])  # a stale give-back changes nothing
    assert claim(store, automation_id, later) == []  # still leased by ``again``


def test_many_attempts_are_recorded_in_one_call(engine: Engine) -> None:
    automation_id, _ = pending_triggers(engine, 5)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    claimed = claim(store, automation_id, now, room=5)
    results = [AttemptResult.DELIVERED, AttemptResult.RETRY, AttemptResult.FAILED] + [
        AttemptResult.DELIVERED
    ] * 2
    store.record([done(c, r, 3.0) for c, r in zip(claimed, results, strict=True)], now)
    assert [trigger_status(engine, c.trigger_id) for c in claimed] == [
        "delivered",
        "retrying",
        "failed",
        "delivered",
        "delivered",
    ]


def test_an_attempt_whose_trigger_was_deleted_meanwhile_is_dropped(engine: Engine) -> None:
    """An erasure or a purge can delete a trigger while its attempt is under way: the other
    attempts of the batch are still recorded, and the batch does not fail."""
    automation_id, _ = pending_triggers(engine, 2)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    gone, kept = claim(store, automation_id, now, room=2)
    with engine.begin() as conn:
        conn.execute(delete(trigger_deliveries).where(trigger_deliveries.c.id == gone.trigger_id))
    counts = store.record(
        [done(gone, AttemptResult.DELIVERED, 3.0), done(kept, AttemptResult.DELIVERED, 3.0)], now
    )
    assert counts == Counter({"delivered": 1})
    assert trigger_status(engine, kept.trigger_id) == "delivered"
    with engine.connect() as conn:
        recorded = conn.scalars(select(delivery_attempts.c.trigger_id)).all()
    assert gone.trigger_id not in recorded and kept.trigger_id in recorded


def attempt_to(url: str, http: Any, *, allow_private: bool) -> Attempt:
    return Attempt(
        "trg_x", Target(url, None, "whsec_" + "A" * 32), b"{}", None, http, allow_private
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://127.0.0.1:9/h", "127.0.0.1 resolves to"),  # an address: checked before
        ("http://localhost:9/h", "localhost resolves to"),  # a name: checked on connecting
        ("http://127\u30020\u30020\u30021:9/h", "127.0.0.1 resolves to"),  # as the client reads it
        ("http://2130706433:9/h", "2130706433: an address in a form"),  # 127.0.0.1 in short
        ("http://127.1:9/h", "127.1: an address in a form"),
    ],
)
def test_a_private_address_is_refused_at_delivery_time(url: str, refusal: str) -> None:
    async def attempt() -> Outcome:
        async with open_session(timeout_s=2, max_connections=4, allow_private=False) as http:
            return await WebhookAction().attempt(attempt_to(url, http, allow_private=False))

    outcome = asyncio.run(attempt())
    assert outcome.result is AttemptResult.FAILED
    assert outcome.error is not None and outcome.error.startswith(f"refused: {refusal}")


class ExplodingSession:
    def post(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError("boom")


def run_deliverer(store: TriggerStore, http: Any, until: Any, timeout_s: float = 20) -> None:
    async def main() -> None:
        deliverer = Deliverer(
            store,
            http,
            None,  # type: ignore[arg-type]
            concurrency=16,
            max_in_flight=4,
            allow_private=True,
            backoff_base_s=1,
            max_backoff_s=10,
        )
        running = asyncio.create_task(deliverer.run(grace_s=2))
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not until() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        deliverer.stop()
        await running

    asyncio.run(main())


def attempts_of(engine: Engine, trigger: str) -> Sequence[Any]:
    query = select(delivery_attempts.c.result, delivery_attempts.c.error).where(
        delivery_attempts.c.trigger_id == trigger
    )
    with engine.connect() as conn:
        return conn.execute(query).all()


def test_an_attempt_that_crashes_is_recorded_and_retried(engine: Engine) -> None:
    _, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    run_deliverer(store, ExplodingSession(), until=lambda: attempts_of(engine, trigger))
    assert attempts_of(engine, trigger) == [("retry", "RuntimeError: boom")]
    assert trigger_status(engine, trigger) == "retrying"


@pytest.mark.parametrize(
    ("task", "queue"), [("sluice.ingest_batch", None), ("crm.sync", "sluice.triggers")]
)
def test_sluices_own_tasks_and_queues_are_not_automation_targets(
    engine: Engine, task: str, queue: str | None
) -> None:
    ws = create_workspace(engine, "reserved").workspace_id
    with pytest.raises(ValueError, match="not for automations"):
        add_automation(engine, ws, "Signed Up", Action.TASK, target=task, queue=queue)


def test_a_worker_delivers_unless_told_not_to(database_url: str, isolated_redis_url: str) -> None:
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    for deliver in (True, False):
        app = create_app(settings, deliver=deliver)
        try:
            names = {step.name for step in app.steps["worker"]}
        finally:
            app.close()
        assert "sluice journal sweep" in names
        assert ("sluice deliverer" in names) is deliver


def test_a_wake_up_reaches_every_listening_deliverer(isolated_redis_url: str) -> None:
    woken = [threading.Event(), threading.Event()]

    async def listen(flag: threading.Event) -> None:
        await listen_for_wakeups(isolated_redis_url, flag.set)

    async def main() -> None:
        listeners = [asyncio.create_task(listen(flag)) for flag in woken]
        await asyncio.sleep(0.5)  # subscribed (each wakes once on subscribing)
        for flag in woken:
            flag.clear()
        await asyncio.to_thread(wake_deliverers, redis.Redis.from_url(isolated_redis_url), 3)
        for _ in range(50):
            if all(flag.is_set() for flag in woken):
                break
            await asyncio.sleep(0.05)
        for listener in listeners:
            listener.cancel()

    asyncio.run(main())
    assert all(flag.is_set() for flag in woken)


def test_a_wake_up_without_redis_is_a_warning_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        wake_deliverers(redis.Redis(port=1, socket_connect_timeout=0.2), 1)  # does not raise
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in warnings] == ["sluice.wakeups"]
    assert "could not wake the deliverers" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
