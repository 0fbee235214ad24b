"""Automation triggers end to end: real ``sluice`` ingest and delivery workers,
the real database, and a real HTTP receiver on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from sqlalchemy import select
from standardwebhooks import Webhook

from sluice.actions import Action
from sluice.producer import Event, EventClient, EventKind
from sluice.producer.envelope import Envelope
from sluice.producer.events import utc_now
from sluice.producer.transport import BrokerTransport
from sluice.store.automations import Automation, add_automation
from sluice.store.schema import automations, delivery_attempts, trigger_deliveries
from sluice.store.workspaces import NewWorkspace
from tests.conftest import Stack
from tests.processes import SluiceProcess, sluice_executable
from tests.receiver import Received, Receiver, Reply, running_receiver

CONSUMER_LIST = "test-consumer:received"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def webhook(stack: Stack, workspace: NewWorkspace, on: str, url: str, **where: str) -> Automation:
    return add_automation(
        stack.engine,
        workspace.workspace_id,
        on,
        Action.WEBHOOK,
        target=url,
        filters=where,
        allow_private_webhooks=True,
    )


def send(stack: Stack, workspace: NewWorkspace, *events: Mapping[str, object]) -> list[str]:
    with EventClient(workspace.workspace_id, broker_url=stack.redis_url) as client:
        return client.send_batch(events)


def triggers_of(stack: Stack, message_id: str) -> list[dict[str, object]]:
    query = select(trigger_deliveries).where(trigger_deliveries.c.message_id == message_id)
    with stack.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def attempts_of(stack: Stack, trigger_id: str) -> list[tuple[int, str, int | None]]:
    query = (
        select(
            delivery_attempts.c.attempt, delivery_attempts.c.result, delivery_attempts.c.status_code
        )
        .where(delivery_attempts.c.trigger_id == trigger_id)
        .order_by(delivery_attempts.c.attempt)
    )
    with stack.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def wait_for_trigger(
    stack: Stack, message_id: str, status: str, timeout_s: float = 30
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = triggers_of(stack, message_id)
        if len(found) == 1 and found[0]["status"] == status:
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(
                f"trigger of {message_id}: {found}, not {status}; deliverer log:\n"
                f"{stack.deliverer.log_text()[-3000:]}"
            )
        time.sleep(0.05)


def event_view(stack: Stack, workspace: NewWorkspace, message_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{stack.gateway_url}/v1/events/{message_id}", auth=(workspace.write_key, "")
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def signed_up(plan: str = "pro", **extra: object) -> dict[str, object]:
    return {
        "kind": "custom",
        "name": "Signed Up",
        "user_id": "u1",
        "properties": {"plan": plan},
        **extra,
    }


def test_delivered_once_signed_and_listed_on_the_event(stack: Stack, receiver: Receiver) -> None:
    workspace = stack.new_workspace()
    automation = webhook(
        stack, workspace, "Signed Up", receiver.script("/hook", [Reply(204)]), plan="pro"
    )
    pro, free = send(stack, workspace, signed_up("pro"), signed_up("free"))

    (request,) = receiver.wait_for("/hook", 1)
    assert automation.secret is not None
    payload = Webhook(automation.secret).verify(request.body, request.headers)
    assert payload["type"] == "event.triggered"
    assert payload["data"]["automation_id"] == automation.id
    assert payload["data"]["event"]["message_id"] == pro
    assert payload["data"]["event"]["properties"] == {"plan": "pro"}
    trigger = wait_for_trigger(stack, pro, "delivered")
    assert request.headers["webhook-id"] == trigger["id"] == payload["data"]["trigger_id"]
    stack.wait_until_idle()
    assert len(receiver.requests_to("/hook")) == 1
    assert attempts_of(stack, str(trigger["id"])) == [(1, "delivered", 204)]

    view = event_view(stack, workspace, pro)
    assert view["status"] == "accepted"
    assert [
        (t["automation_id"], t["action"], t["status"], t["attempts"]) for t in view["triggers"]
    ] == [(automation.id, "webhook", "delivered", 1)]
    assert event_view(stack, workspace, free)["triggers"] == []  # the filter did not match


def test_a_500_is_retried_with_the_same_webhook_id(stack: Stack, receiver: Receiver) -> None:
    workspace = stack.new_workspace()
    automation = webhook(
        stack, workspace, "Signed Up", receiver.script("/flaky", [Reply(500), Reply(200)])
    )
    (message_id,) = send(stack, workspace, signed_up())

    first, second = receiver.wait_for("/flaky", 2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert automation.secret is not None
    for request in (first, second):
        Webhook(automation.secret).verify(request.body, request.headers)
    trigger = wait_for_trigger(stack, message_id, "delivered")
    assert attempts_of(stack, str(trigger["id"])) == [(1, "retry", 500), (2, "delivered", 200)]

    listed = subprocess.run(
        [sluice_executable(), "deliveries", workspace.workspace_id, "--json"],
        env={**os.environ, "SLUICE_DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [
        (a["attempt"], a["result"], a["status_code"], a["error"])
        for a in orjson.loads(listed.stdout)
    ] == [
        (2, "delivered", 200, None),
        (1, "retry", 500, "HTTP 500"),
    ]


def test_a_timeout_is_retried(stack: Stack, receiver: Receiver) -> None:
    workspace = stack.new_workspace()
    url = receiver.script("/sleepy", [Reply(200, delay_s=4.0), Reply(200)])  # timeout: 2.5 s
    webhook(stack, workspace, "Signed Up", url)
    (message_id,) = send(stack, workspace, signed_up())

    trigger = wait_for_trigger(stack, message_id, "delivered")
    assert attempts_of(stack, str(trigger["id"])) == [(1, "retry", None), (2, "delivered", 200)]
    with stack.engine.connect() as conn:
        error = conn.execute(
            select(delivery_attempts.c.error).where(
                delivery_attempts.c.trigger_id == trigger["id"], delivery_attempts.c.attempt == 1
            )
        ).scalar_one()
    assert error.startswith("timeout")


def test_429_waits_for_retry_after(stack: Stack, receiver: Receiver) -> None:
    workspace = stack.new_workspace()
    url = receiver.script("/busy", [Reply(429, headers={"Retry-After": "2"}), Reply(200)])
    webhook(stack, workspace, "Signed Up", url)
    (message_id,) = send(stack, workspace, signed_up())

    first, second = receiver.wait_for("/busy", 2)
    assert second.at - first.at >= 2.0  # the backoff alone would be ~0.2 s
    wait_for_trigger(stack, message_id, "delivered")


def test_a_400_is_not_retried(stack: Stack, receiver: Receiver) -> None:
    workspace = stack.new_workspace()
    webhook(stack, workspace, "Signed Up", receiver.script("/refuses", [Reply(400)]))
    (message_id,) = send(stack, workspace, signed_up())

    trigger = wait_for_trigger(stack, message_id, "failed")
    stack.wait_until_idle()
    assert attempts_of(stack, str(trigger["id"])) == [(1, "failed", 400)]
    assert len(receiver.requests_to("/refuses")) == 1


def test_410_disables_the_automation(stack: Stack, receiver: Receiver) -> None:
    workspace = stack.new_workspace()
    automation = webhook(stack, workspace, "Signed Up", receiver.script("/gone", [Reply(410)]))
    (first,) = send(stack, workspace, signed_up())
    wait_for_trigger(stack, first, "failed")
    with stack.engine.connect() as conn:
        row = conn.execute(select(automations).where(automations.c.id == automation.id)).one()
    assert (row.status, row.disabled_reason) == ("disabled", "the endpoint answered 410 Gone")

    (later,) = send(stack, workspace, signed_up())
    stack.wait_for_outcomes(workspace.workspace_id, [later])
    stack.wait_until_idle()
    assert triggers_of(stack, later) == []
    assert len(receiver.requests_to("/gone")) == 1


def test_a_slow_endpoint_does_not_delay_another_automations_deliveries(
    stack: Stack, receiver: Receiver
) -> None:
    workspace = stack.new_workspace()
    webhook(stack, workspace, "Slow", receiver.script("/slow", [Reply(200, delay_s=1.0)]))
    webhook(stack, workspace, "Fast", receiver.script("/fast", [Reply(200)]))
    slow = [{"kind": "custom", "name": "Slow", "user_id": f"u{i}"} for i in range(50)]
    send(stack, workspace, *slow, {"kind": "custom", "name": "Fast", "user_id": "u"})

    (fast,) = receiver.wait_for("/fast", 1)
    slow_requests = receiver.wait_for("/slow", 50, timeout_s=90)
    # The slow triggers were committed first, in the same batch. The deliverer claims no
    # more of them than twice the cap, holds the cap's 4 under way and the rest in wait,
    # so the fast automation's trigger goes out before the slow endpoint first answers.
    first_slow_answer = min(r.answered_at or float("inf") for r in slow_requests)
    assert fast.at < first_slow_answer
    assert 2 <= most_at_once(slow_requests) <= 4  # in parallel, within the cap


def most_at_once(requests: list[Received]) -> int:
    """The most requests open at one moment (counted at each one's arrival)."""
    return max(
        sum(1 for r in requests if r.at <= s.at < (r.answered_at or float("inf"))) for s in requests
    )


def test_a_redelivered_batch_and_a_duplicate_order_fire_once(
    stack: Stack, receiver: Receiver
) -> None:
    workspace = stack.new_workspace()
    webhook(stack, workspace, "Order Completed", receiver.script("/orders", [Reply(200)]))
    order = {"orderId": "A-1", "total": 10}
    envelope = Envelope(
        events=[  # two confirmations of one order
            Event(
                workspace_id=workspace.workspace_id,
                kind=EventKind.CONFIRMATION,
                name="Order Completed",
                user_id="u1",
                properties=order,
            )
            for _ in range(2)
        ]
    )
    transport = BrokerTransport(stack.redis_url)
    transport.publish(envelope)
    transport.publish(envelope)  # a redelivery
    transport.close()
    first, duplicate = (e.message_id for e in envelope.events)

    outcomes = stack.wait_for_outcomes(workspace.workspace_id, [first, duplicate])
    assert outcomes == {first: ("accepted", None), duplicate: ("discarded", "duplicate_order")}
    wait_for_trigger(stack, first, "delivered")
    stack.wait_until_idle()
    time.sleep(0.5)  # a second copy of the delivery task would have run by now
    stack.wait_until_idle()
    assert triggers_of(stack, duplicate) == []
    assert len(receiver.requests_to("/orders")) == 1


def test_a_killed_deliverers_triggers_go_out_again_with_the_same_webhook_id(
    stack: Stack, receiver: Receiver
) -> None:
    workspace = stack.new_workspace()
    # The first three requests are held (under the 2.5 s timeout) while the deliverer dies.
    url = receiver.script("/killed", [Reply(200, delay_s=2.0)] * 3 + [Reply(200)])
    webhook(stack, workspace, "Signed Up", url)
    message_ids = send(stack, workspace, *(signed_up() for _ in range(3)))
    receiver.wait_for("/killed", 3)
    deliverer = stack.deliverer
    assert deliverer.process is not None
    deliverer.process.kill()  # SIGKILL: the three attempts are neither answered nor recorded
    deliverer.process.wait()
    ready_before = deliverer.log_text().count("deliverer ready")
    deliverer.start()
    deliverer._wait(
        lambda: deliverer.log_text().count("deliverer ready") > ready_before, "ready", 60
    )
    time.sleep(1.5)  # a poll or two: the leases hold, nothing is attempted again yet
    assert len(receiver.requests_to("/killed")) == 3
    triggers = [triggers_of(stack, m)[0] for m in message_ids]
    assert {(t["status"], t["attempts"]) for t in triggers} == {("pending", 1)}
    with stack.engine.begin() as conn:  # the leases run out (60 s with these settings)
        conn.execute(
            trigger_deliveries.update()
            .where(trigger_deliveries.c.id.in_([t["id"] for t in triggers]))
            .values(next_attempt_at=utc_now() - timedelta(seconds=1))
        )
    for message_id in message_ids:
        delivered = wait_for_trigger(stack, message_id, "delivered")
        assert delivered["attempts"] == 2
        assert attempts_of(stack, str(delivered["id"])) == [(2, "delivered", 200)]
    by_event: dict[str, set[str]] = {}
    for request in receiver.requests_to("/killed"):
        message_id = orjson.loads(request.body)["data"]["event"]["message_id"]
        by_event.setdefault(message_id, set()).add(request.headers["webhook-id"])
    assert by_event == {m: {str(triggers_of(stack, m)[0]["id"])} for m in message_ids}
    assert len(receiver.requests_to("/killed")) == 6  # at least once: sent again after a kill


def test_a_stale_event_is_stored_but_fires_nothing(stack: Stack, receiver: Receiver) -> None:
    workspace = stack.new_workspace()
    webhook(stack, workspace, "Signed Up", receiver.script("/fresh-only", [Reply(200)]))
    three_hours_ago = utc_now() - timedelta(hours=3)
    stale, fresh = send(stack, workspace, signed_up(timestamp=three_hours_ago), signed_up())

    wait_for_trigger(stack, fresh, "delivered")
    view = event_view(stack, workspace, stale)
    assert view["status"] == "accepted" and view["triggers"] == []
    assert "over the trigger age limit of 7200 s" in str(view["detail"])
    assert stack.event_rows_per_message(workspace.workspace_id) == {stale: 1, fresh: 1}
    (request,) = receiver.requests_to("/fresh-only")
    assert orjson.loads(request.body)["data"]["event"]["message_id"] == fresh


def test_the_task_action_reaches_a_consumer_task(stack: Stack, tmp_path: Path) -> None:
    workspace = stack.new_workspace()
    queue = f"test.consumer.{workspace.workspace_id[:8]}"
    add_automation(
        stack.engine,
        workspace.workspace_id,
        "Signed Up",
        Action.TASK,
        target="tests.consumer.record",
        queue=queue,
    )
    client = redis.Redis.from_url(stack.redis_url)
    client.delete(CONSUMER_LIST)
    consumer = SluiceProcess(
        [],
        {"TEST_CONSUMER_BROKER": stack.redis_url, "PYTHONPATH": os.getcwd()},
        tmp_path / "consumer.log",
    )
    celery = str(Path(sys.executable).with_name("celery"))
    consumer.command = [celery, "-A", "tests.consumer_app", "worker", "-Q", queue]
    consumer.command += ["--pool", "solo", "-n", f"consumer-{queue}@%h", "--loglevel", "INFO"]
    consumer.start()
    try:
        consumer.wait_for_log(" ready.")
        (message_id,) = send(stack, workspace, signed_up())
        wait_for_trigger(stack, message_id, "delivered")
        deadline = time.monotonic() + 30
        while not (item := client.lpop(CONSUMER_LIST)):
            assert time.monotonic() < deadline, consumer.log_text()[-3000:]
            time.sleep(0.05)
    finally:
        consumer.stop()
    payload = orjson.loads(item)  # type: ignore[arg-type]  # redis-py types replies loosely
    assert payload["data"]["event"]["message_id"] == message_id
    assert payload["data"]["trigger_id"] == triggers_of(stack, message_id)[0]["id"]


def test_a_bulletin_is_counted_with_its_event_not_sent(stack: Stack) -> None:
    workspace = stack.new_workspace()
    bulletin = add_automation(
        stack.engine, workspace.workspace_id, "Signed Up", Action.BULLETIN, filters={"plan": "pro"}
    )
    pro, free = send(stack, workspace, signed_up("pro"), signed_up("free"))

    stack.wait_for_outcomes(workspace.workspace_id, [pro, free])
    (trigger,) = triggers_of(stack, pro)  # written with the event: there when it is decided
    assert (trigger["automation_id"], trigger["action"], trigger["status"]) == (
        bulletin.id,
        "bulletin",
        "delivered",
    )
    assert trigger["attempts"] == 0 and trigger["delivered_at"] is not None
    assert triggers_of(stack, free) == []
    (listed,) = event_view(stack, workspace, pro)["triggers"]
    assert (listed["action"], listed["status"]) == ("bulletin", "delivered")
