"""Fan-out and delivery, piece by piece: matching, URL safety, signatures, answer
classification, backoff, and the trigger rows and leases in a real database (each
backend). The end-to-end behaviour is in ``test_triggers_e2e.py``."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import redis
from sqlalchemy import Engine, select, update
from standardwebhooks import Webhook, WebhookVerificationError

from sluice.producer.events import Event, EventKind, utc_now
from sluice.producer.wire import DELIVER_TASK, TRIGGERS_QUEUE
from sluice.rules import Reason, Verdict
from sluice.worker.actions import Action, AttemptResult, Outcome
from sluice.worker.actions.webhook import classify, retry_after_s, signed_headers
from sluice.worker.actions.webhook_urls import (
    UnresolvableHostError,
    UnsafeWebhookUrlError,
    check_webhook_url,
)
from sluice.worker.admin.automations import (
    Automation,
    AutomationStatus,
    add_automation,
    disable_automation,
)
from sluice.worker.admin.workspaces import create_workspace
from sluice.worker.celery_app import create_app
from sluice.worker.db.engine import writing
from sluice.worker.db.schema import automations, delivery_attempts, trigger_deliveries
from sluice.worker.delivery.deliverer import Deliverer, backoff_s, retry_delay_s
from sluice.worker.delivery.dispatch import dispatch
from sluice.worker.delivery.leases import (
    Claimed,
    DeliveryPolicy,
    Later,
    Settled,
    TriggerStore,
)
from sluice.worker.delivery.sweep import sweep_stuck_triggers
from sluice.worker.ingest.records import Decision
from sluice.worker.ingest.store import EventStore
from sluice.worker.runtime import Runtime
from sluice.worker.settings import Settings

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
        delay = backoff_s(attempt, 5.0, 450.0)
        ceiling = min(450.0, 5.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert retry_delay_s(1, 30.0, 5.0, 450.0) == 30.0  # Retry-After wins over the backoff
    assert retry_delay_s(1, 10_000.0, 5.0, 450.0) == 10_000.0  # even past the cap (bridged)
    assert retry_delay_s(1, 10**9, 5.0, 450.0) == 86_400.0  # up to a day


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
    assert len(recorded.triggers) == 2  # the webhooks, for the delivery queue
    final = {d.message_id: d for d in recorded.decisions}
    assert final[stale.message_id].verdict.status == "accepted"
    assert "2 matching automation(s)" in (final[stale.message_id].verdict.detail or "")
    assert final[fresh.message_id].verdict.detail is None

    # The same batch again (a redelivery) replays: no new rows; the never-attempted
    # webhooks are what it would publish again.
    replayed = [replace(d, replayed=True) for d in recorded.decisions]
    again = store.record_batch("b1", replayed, now)
    assert again.triggers == []
    assert len(trigger_rows(engine, ws)) == 3
    keys = [(ws, fresh.message_id), (ws, free.message_id)]
    assert sorted(store.undelivered_triggers(keys)) == sorted(recorded.triggers)


POLICY = DeliveryPolicy(
    lease_s=60, max_attempts=3, max_in_flight=2, busy_delay_s=1, disable_after_s=3600
)


def pending_triggers(engine: Engine, count: int) -> tuple[str, list[str]]:
    ws = create_workspace(engine, "claims").workspace_id
    hook = webhook_on(engine, ws)
    recorded = EventStore(engine).record_batch(
        f"b-{ws}", [decision(ws, event()) for _ in range(count)], utc_now()
    )
    assert {automation for _, automation in recorded.triggers} == {hook.id}
    return hook.id, [trigger for trigger, _ in recorded.triggers]


def test_a_claim_is_a_lease_and_the_endpoint_has_an_in_flight_cap(engine: Engine) -> None:
    _, (first, second, third) = pending_triggers(engine, 3)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    claimed = store.claim(first, now)
    assert isinstance(claimed, Claimed) and claimed.attempt == 1
    assert store.claim(first, now) == Later(now + timedelta(seconds=60))  # leased
    assert isinstance(store.claim(second, now), Claimed)
    busy = store.claim(third, now)  # 2 in flight: look again in 1 to 3 s
    assert isinstance(busy, Later)
    assert now + timedelta(seconds=1) <= busy.at <= now + timedelta(seconds=3)

    assert store.record(claimed, Outcome(AttemptResult.DELIVERED, 12, 200), now, 0, now) is None
    assert store.claim(first, now) == Settled("delivered")
    assert isinstance(store.claim(third, now), Claimed)  # a slot is free again


def test_retries_end_after_the_attempt_cap(engine: Engine) -> None:
    _, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    for attempt in (1, 2, 3):
        claimed = store.claim(trigger, now)
        assert isinstance(claimed, Claimed) and claimed.attempt == attempt
        delay = store.record(
            claimed, Outcome(AttemptResult.RETRY, 5, 503, "HTTP 503"), now, 2.0, now
        )
        assert delay == (2.0 if attempt < 3 else None)
        if delay:
            assert store.claim(trigger, now) == Later(now + timedelta(seconds=2))  # backoff
            now += timedelta(seconds=2)
    assert store.claim(trigger, now) == Settled("failed")


def test_a_crashed_attempt_counts_and_the_lease_runs_out(engine: Engine) -> None:
    _, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    for attempt in (1, 2, 3):  # each claim is followed by a crash: nothing is recorded
        claimed = store.claim(trigger, now)
        assert isinstance(claimed, Claimed) and claimed.attempt == attempt
        now += timedelta(seconds=61)
    assert store.claim(trigger, now) == Settled("failed")


def test_failing_for_long_disables_the_automation_and_cancels_the_rest(engine: Engine) -> None:
    automation_id, (first, second) = pending_triggers(engine, 2)
    store = TriggerStore(engine, replace(POLICY, disable_after_s=0))
    now = utc_now()
    claimed = store.claim(first, now)
    assert isinstance(claimed, Claimed)
    store.record(claimed, Outcome(AttemptResult.FAILED, 3, 404, "HTTP 404"), now, 0, now)
    with engine.connect() as conn:
        row = conn.execute(select(automations).where(automations.c.id == automation_id)).one()
    assert row.status == AutomationStatus.DISABLED
    assert row.disabled_reason.startswith("every attempt failed since")
    assert store.claim(second, now) == Settled("cancelled")


def test_a_private_url_is_refused_at_delivery_time(engine: Engine) -> None:
    _, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    claimed = store.claim(trigger, utc_now())
    assert isinstance(claimed, Claimed)
    with httpx.Client() as http:
        deliverer = Deliverer(store, http, allow_private=False, backoff_base_s=1, max_delay_s=10)
        outcome = deliverer.attempt(None, claimed)  # type: ignore[arg-type]
    assert outcome.result is AttemptResult.FAILED
    assert outcome.error is not None and outcome.error.startswith("refused: 127.0.0.1 resolves to")


def trigger_status(engine: Engine, trigger: str) -> str:
    query = select(trigger_deliveries.c.status).where(trigger_deliveries.c.id == trigger)
    with engine.connect() as conn:
        return str(conn.execute(query).scalar_one())


def test_disabling_cancels_the_waiting_deliveries_at_once(engine: Engine) -> None:
    automation_id, (under_way, waiting) = pending_triggers(engine, 2)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    claimed = store.claim(under_way, now)
    assert isinstance(claimed, Claimed)
    with writing(engine) as conn:
        assert disable_automation(conn, automation_id, "by a test", now)
    assert trigger_status(engine, waiting) == "cancelled"
    assert trigger_status(engine, under_way) == "pending"  # it records its own result
    store.record(claimed, Outcome(AttemptResult.DELIVERED, 5, 200), now, 0, now)
    assert trigger_status(engine, under_way) == "delivered"


def test_triggers_whose_task_was_lost_are_found_once_per_idle_period(engine: Engine) -> None:
    _, (lost, leased, done) = pending_triggers(engine, 3)
    store = TriggerStore(engine, replace(POLICY, max_in_flight=3))
    now = utc_now()
    assert isinstance(store.claim(leased, now), Claimed)
    finished = store.claim(done, now)
    assert isinstance(finished, Claimed)
    store.record(finished, Outcome(AttemptResult.DELIVERED, 5, 200), now, 0, now)

    mine = {lost, leased, done}  # the database holds other tests' triggers too

    def stuck(at: datetime) -> set[str]:
        return mine & {trigger for trigger, _ in store.stuck(at, idle_s=40, limit=10_000)}

    assert stuck(now + timedelta(seconds=30)) == set()  # not idle yet
    later = now + timedelta(seconds=50)
    assert stuck(later) == {lost}  # the 60 s lease of ``leased`` still holds
    assert stuck(later) == set()  # published again: touched
    assert stuck(later + timedelta(seconds=41)) == {lost, leased}  # the lease ran out


def test_the_sweep_publishes_stuck_triggers_once_per_interval_across_workers(
    engine: Engine, database_url: str, isolated_redis_url: str
) -> None:
    _, (lost,) = pending_triggers(engine, 1)
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    app = create_app(settings)
    runtime = Runtime(settings)
    assert {"sluice stuck-trigger sweep", "sluice journal sweep"} <= {
        step.name for step in app.steps["worker"]
    }
    client = redis.Redis.from_url(isolated_redis_url)
    with writing(engine) as conn:  # its task message is long gone
        conn.execute(
            update(trigger_deliveries)
            .where(trigger_deliveries.c.id == lost)
            .values(next_attempt_at=utc_now() - timedelta(days=1))
        )
    try:
        published = sweep_stuck_triggers(app, runtime.redis, lambda: runtime.deliverer)
        assert published >= 1  # (other tests' triggers may be as old)
        assert (
            sweep_stuck_triggers(app, runtime.redis, lambda: runtime.deliverer) == 0
        )  # another worker's turn is a minute away
        messages = [orjson.loads(m) for m in client.lrange(TRIGGERS_QUEUE, 0, -1)]
        assert len(messages) == published
        assert {m["headers"]["task"] for m in messages} == {DELIVER_TASK}
        assert any(lost in m["headers"]["argsrepr"] for m in messages)
    finally:
        app.close()
        runtime.store.engine.dispose()


def test_a_superseded_attempt_does_not_overwrite_the_newer_one(engine: Engine) -> None:
    _, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    now = utc_now()
    slow = store.claim(trigger, now)  # its lease (60 s) runs out before it answers
    assert isinstance(slow, Claimed)
    later = now + timedelta(seconds=61)
    newer = store.claim(trigger, later)
    assert isinstance(newer, Claimed) and newer.attempt == 2
    store.record(newer, Outcome(AttemptResult.DELIVERED, 8, 200), later, 0, later)
    assert store.record(slow, Outcome(AttemptResult.RETRY, 61_000, 503), now, 1, later) is None
    assert trigger_status(engine, trigger) == "delivered"
    assert store.claim(trigger, later) == Settled("delivered")


class ExplodingClient:
    def stream(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError("boom")


def test_an_attempt_that_crashes_is_recorded_and_retried(engine: Engine) -> None:
    _, (trigger,) = pending_triggers(engine, 1)
    store = TriggerStore(engine, POLICY)
    deliverer = Deliverer(
        store,
        ExplodingClient(),  # type: ignore[arg-type]
        allow_private=True,
        backoff_base_s=1,
        max_delay_s=10,
    )
    again_in_s = deliverer.deliver(None, trigger)  # type: ignore[arg-type]
    assert again_in_s is not None and 0.5 <= again_in_s <= 1.0
    query = select(delivery_attempts.c.result, delivery_attempts.c.error).where(
        delivery_attempts.c.trigger_id == trigger
    )
    with engine.connect() as conn:
        assert conn.execute(query).all() == [("retry", "RuntimeError: boom")]
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


def test_dispatch_groups_a_batchs_triggers_by_automation_ten_per_message(
    database_url: str, isolated_redis_url: str
) -> None:
    app = create_app(Settings(redis_url=isolated_redis_url, database_url=database_url))
    slow = [(f"trg_slow{i}", "au_slow") for i in range(23)]
    fast = [("trg_fast", "au_fast")]
    try:
        dispatch(app, [*slow[:12], *fast, *slow[12:]])
    finally:
        app.close()
    client = redis.Redis.from_url(isolated_redis_url)
    bodies = [orjson.loads(m) for m in reversed(client.lrange(TRIGGERS_QUEUE, 0, -1))]
    chunks = [orjson.loads(base64.b64decode(b["body"]))[0][0] for b in bodies]
    assert chunks == [
        [f"trg_slow{i}" for i in range(10)],
        [f"trg_slow{i}" for i in range(10, 20)],
        [f"trg_slow{i}" for i in range(20, 23)],
        ["trg_fast"],
    ]
