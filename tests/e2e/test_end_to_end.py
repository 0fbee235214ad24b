"""The whole path with real processes: EventClient / HTTP → Redis → a real Celery worker
process (`sluice worker`) → the database, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from typing import Any

import httpx
import orjson
import pytest
from celery import Celery
from segment.analytics.client import Client as SegmentClient
from sqlalchemy import select

from sluice.producer import Event, EventClient, EventKind, UnknownWorkspaceError, keys
from sluice.producer.envelope import Envelope
from sluice.producer.transport import BrokerTransport
from sluice.producer.wire import (
    INGEST_QUEUE,
    INGEST_TASK,
    SERIALIZER,
    register_serializer,
)
from sluice.store.schema import dead_letters, events
from tests.conftest import Stack, sluice_env
from tests.processes import sluice_executable
from tests.unchecked import send_unchecked

ACCEPTED = ("accepted", None)


def test_event_client_events_are_persisted_once_and_accepted(stack: Stack) -> None:
    workspace = stack.new_workspace()
    with EventClient(workspace.workspace_id, broker_url=stack.redis_url) as client:
        message_ids = client.send_batch(
            {
                "kind": "custom",
                "name": "Signed Up",
                "user_id": f"user-{i}",
                "properties": {"plan": "pro", "seat": i},
            }
            for i in range(120)
        )
        message_ids.append(
            client.send(
                {"kind": "login", "email": "ada@example.com", "traits": {"first_name": "Ada"}}
            )
        )

    assert stack.wait_for_outcomes(workspace.workspace_id, message_ids) == {
        message_id: ACCEPTED for message_id in message_ids
    }
    assert stack.event_rows_per_message(workspace.workspace_id) == {
        message_id: 1 for message_id in message_ids
    }
    with stack.engine.connect() as conn:
        stored = conn.execute(select(events).where(events.c.message_id == message_ids[7])).one()
    assert (stored.kind, stored.name, stored.user_id) == ("custom", "Signed Up", "user-7")
    assert stored.properties == {"plan": "pro", "seat": 7}
    assert stored.source == "client"


def test_a_batch_delivered_twice_is_persisted_once(stack: Stack) -> None:
    workspace = stack.new_workspace()
    envelope = Envelope(
        events=[
            Event(
                workspace_id=workspace.workspace_id,
                kind=EventKind.CUSTOM,
                name="Clicked",
                user_id=f"user-{i}",
            )
            for i in range(40)
        ]
    )
    transport = BrokerTransport(stack.redis_url)
    transport.publish(envelope)
    transport.publish(envelope)  # what a redelivery or a producer retry looks like
    transport.close()

    message_ids = [event.message_id for event in envelope.events]
    stack.wait_for_outcomes(workspace.workspace_id, message_ids)
    stack.wait_until_idle()
    assert stack.redis.get(keys.deliveries(envelope.batch_id, 0)) == b"2"  # both ran
    assert stack.outcomes_of(workspace.workspace_id) == {m: ACCEPTED for m in message_ids}
    assert stack.event_rows_per_message(workspace.workspace_id) == {m: 1 for m in message_ids}


def test_http_calls_end_accepted_and_outcomes_are_per_workspace(stack: Stack) -> None:
    workspace, other = stack.new_workspace(), stack.new_workspace()
    auth = (workspace.write_key, "")
    with httpx.Client(base_url=stack.gateway_url, auth=auth, timeout=10) as http:
        answers = [
            http.post("/v1/identify", json={"userId": "u1", "traits": {"email": "u1@x.io"}}),
            http.post(
                "/v1/track",
                json={
                    "userId": "u1",
                    "event": "Order Completed",
                    "properties": {"orderId": "o-1", "total": 30},
                },
            ),
            http.post("/v1/update", json={"userId": "u1", "traits": {"plan": "pro"}}),
            http.post(
                "/v1/batch",
                json={
                    "batch": [
                        {"type": "track", "userId": "u1", "event": "Email Opened"},
                        {"type": "page", "anonymousId": "a1", "name": "Pricing"},
                    ]
                },
            ),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 200]
        message_ids = [a.json()["message_id"] for a in answers[:3]]
        message_ids += answers[3].json()["message_ids"]

        assert stack.wait_for_outcomes(workspace.workspace_id, message_ids) == {
            message_id: ACCEPTED for message_id in message_ids
        }
        outcome = http.get(f"/v1/events/{message_ids[1]}").json()
        assert (outcome["status"], outcome["kind"], outcome["name"]) == (
            "accepted",
            "confirmation",
            "Order Completed",
        )
        assert (
            http.get(f"/v1/events/{message_ids[1]}", auth=(other.write_key, "")).status_code == 404
        )
        assert http.get("/v1/events/no-such-event").status_code == 404

    kinds = {m: k for m, k in _kinds(stack, workspace.workspace_id).items()}
    assert [kinds[m] for m in message_ids] == [
        "login",
        "confirmation",
        "update",
        "email_open",
        "custom",
    ]


def test_http_batch_sent_twice_with_the_same_message_ids_is_persisted_once(stack: Stack) -> None:
    workspace = stack.new_workspace()
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "Viewed", "messageId": f"retry-{i}"}
            for i in range(10)
        ]
    }
    with httpx.Client(base_url=stack.gateway_url, auth=(workspace.write_key, "")) as http:
        first = http.post("/v1/batch", json=body).json()["message_ids"]
        second = http.post("/v1/batch", json=body).json()["message_ids"]
    assert first == second == [f"retry-{i}" for i in range(10)]
    stack.wait_for_outcomes(workspace.workspace_id, first)
    stack.wait_until_idle()
    assert stack.event_rows_per_message(workspace.workspace_id) == {m: 1 for m in first}
    assert stack.outcomes_of(workspace.workspace_id) == {m: ACCEPTED for m in first}
    # The second request did run: each of its events was recorded as a repeat.
    assert stack.repeats_of(workspace.workspace_id) == {m: 1 for m in first}


@pytest.mark.parametrize("gzip", [False, True])
def test_the_official_segment_client_sends_events_that_end_accepted(
    stack: Stack, gzip: bool
) -> None:
    workspace = stack.new_workspace()
    errors: list[Exception] = []
    client = SegmentClient(
        write_key=workspace.write_key,
        host=stack.gateway_url,
        sync_mode=True,
        gzip=gzip,
        max_retries=1,
        on_error=lambda error, _batch: errors.append(error),
    )
    sent = [
        client.identify("sdk-user", {"email": "sdk@example.com", "name": "SDK"}),
        client.track("sdk-user", "Signed Up", {"plan": "pro"}),
        client.track("sdk-user", "Order Completed", {"order_id": "o-9", "revenue": 12.5}),
        client.page("sdk-user", "Docs", "Quickstart"),
    ]
    assert not errors
    assert_all_accepted(stack, workspace.workspace_id, sent)


def assert_all_accepted(stack: Stack, workspace_id: str, sent: list[Any]) -> None:
    """Every call an SDK reported sent (``(ok, message)`` pairs) ends accepted."""
    message_ids = [message["messageId"] for ok, message in sent if ok]
    assert len(message_ids) == len(sent)
    assert stack.wait_for_outcomes(workspace_id, message_ids) == {
        message_id: ACCEPTED for message_id in message_ids
    }


def test_the_official_rudderstack_client_sends_events_that_end_accepted(stack: Stack) -> None:
    from rudderstack.analytics.client import Client as RudderClient

    workspace = stack.new_workspace()
    errors: list[Exception] = []
    client = RudderClient(
        write_key=workspace.write_key,
        host=stack.gateway_url,
        sync_mode=True,
        max_retries=1,
        on_error=lambda error, _batch: errors.append(error),
    )
    sent = [
        client.identify("rs-user", {"email": "rs@example.com"}),
        client.track("rs-user", "Order Completed", {"order_id": "rs-1"}),
        client.track("rs-user", "Email Opened", {}),
        client.screen("rs-user", "Home", "Start"),
    ]
    assert not errors
    assert_all_accepted(stack, workspace.workspace_id, sent)


def test_a_bad_event_is_rejected_its_siblings_accepted_and_poison_is_dead_lettered(
    stack: Stack,
) -> None:
    workspace = stack.new_workspace()
    good = Event(
        workspace_id=workspace.workspace_id, kind=EventKind.CUSTOM, name="Fine", user_id="u"
    )
    bad = {**good.model_dump(mode="json"), "message_id": "bad-kind", "kind": "teleport"}
    envelope = {"v": 1, "batch_id": "mixed-batch", "events": [good.model_dump(mode="json"), bad]}
    register_serializer()
    app = Celery(broker=stack.redis_url, set_as_current=False)
    poison_batch = "poison-batch"
    for args in ([envelope], [{"v": 99, "batch_id": poison_batch, "events": [{}]}]):
        app.send_task(INGEST_TASK, args=args, queue=INGEST_QUEUE, serializer=SERIALIZER)
    app.close()

    outcomes = stack.wait_for_outcomes(workspace.workspace_id, [good.message_id, "bad-kind"])
    assert outcomes[good.message_id] == ACCEPTED
    assert outcomes["bad-kind"] == ("rejected", "invalid")
    stack.wait_until_idle()
    with stack.engine.connect() as conn:
        letter = conn.execute(
            select(dead_letters).where(dead_letters.c.batch_id == poison_batch)
        ).one()
    assert letter.reason == "poison envelope"
    assert "unsupported envelope version 99" in letter.detail
    assert orjson.loads(letter.payload)["v"] == 99
    assert stack.worker.process is not None and stack.worker.process.poll() is None


def test_events_of_an_unknown_workspace_are_rejected_not_lost(stack: Stack) -> None:
    """From a producer that does not check the id (the client does: the next test)."""
    fields = {"kind": "custom", "name": "Orphan", "user_id": "u"}
    message_id = send_unchecked(stack.redis_url, "no-such-workspace", fields)
    outcome = stack.wait_for_outcomes("no-such-workspace", [message_id])[message_id]
    assert outcome == ("rejected", "invalid")


def test_the_client_refuses_an_unknown_workspace_and_queues_nothing(stack: Stack) -> None:
    """The stack's worker wrote the known ids when it started; `sluice workspace create`
    adds a new one at once, and the client takes it."""
    unknown = f"ws-{uuid.uuid4().hex[:8]}"
    orphan = {"kind": "custom", "name": "Orphan", "user_id": "u", "message_id": "m1"}
    with (
        EventClient(unknown, broker_url=stack.redis_url) as client,
        pytest.raises(UnknownWorkspaceError, match=unknown),
    ):
        client.send(orphan)
    assert not stack.redis.exists(keys.pending(unknown, "m1"))
    created = subprocess.run(
        [sluice_executable(), "workspace", "create", "fresh", "--json"],
        env={**os.environ, **sluice_env(stack.redis_url, stack.database_url)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    workspace_id = json.loads(created.stdout)["workspace_id"]
    with EventClient(workspace_id, broker_url=stack.redis_url) as client:
        message_id = client.send({"kind": "custom", "name": "Signed Up", "user_id": "u"})
    assert stack.wait_for_outcomes(workspace_id, [message_id])[message_id][0] == "accepted"


def _kinds(stack: Stack, workspace_id: str) -> dict[str, str]:
    query = select(events.c.message_id, events.c.kind).where(events.c.workspace_id == workspace_id)
    with stack.engine.connect() as conn:
        return {row.message_id: row.kind for row in conn.execute(query)}


def test_workers_answer_remote_control_as_flower_uses_it(stack: Stack) -> None:
    app = Celery(broker=stack.redis_url, set_as_current=False)
    try:
        replies = app.control.ping(timeout=2)
        stats = app.control.inspect(timeout=2).active_queues()
    finally:
        app.close()
    assert replies and all(reply == {"ok": "pong"} for r in replies for reply in r.values())
    # The worker; the deliverer is no Celery worker (it takes triggers from the database).
    assert stats and [[queue["name"] for queue in queues] for queues in stats.values()] == [
        [INGEST_QUEUE]
    ]


def test_each_vendor_format_reaches_the_worker(stack: Stack) -> None:
    from sluice.store.definitions import add_definition

    workspace = stack.new_workspace()
    ws, key = workspace.workspace_id, workspace.write_key
    bunce = add_definition(
        stack.engine, ws, "bunce", "Purchase", params={"plan": "string"}
    ).definition_id
    add_definition(stack.engine, ws, "clevertap", "Program Released", required=["program_id"])
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as http:
        answers = [
            http.post(
                "/compat/bunce/v1/events/trigger",
                headers={"X-Authorization": key},
                json={"event_id": bunce, "payload": {"email": "a@x.io", "plan": "pro"}},
            ),
            http.post(
                "/compat/user-event/v1/event/",
                headers={"Authorization": f"Bearer {key}"},
                json={"user": {"_id": "ue-1"}, "event": {"login": {"plan": "pro"}}},
            ),
            http.post(
                "/compat/clevertap/1/targets/trigger.json",
                headers={"X-CleverTap-Account-Id": ws, "X-CleverTap-Passcode": key},
                json={
                    "business_event": "Program Released",
                    "name": "Ep 12",
                    "c-by": "me",
                    "when": "now",
                    "properties": {"program_id": "7"},
                },
            ),
            http.post(
                f"/compat/bento/api/v1/batch/events?site_uuid={ws}",
                auth=(key, ""),
                json={
                    "events": [
                        {
                            "type": "$purchase",
                            "email": "b@x.io",
                            "details": {"unique": {"key": "o-1"}},
                        },
                        {
                            "type": "$purchase",
                            "email": "b@x.io",
                            "details": {"unique": {"key": "o-1"}},
                        },
                    ]
                },
            ),
            http.post(
                "/compat/platformly/",
                data={
                    "api_key": key,
                    "action": "contact_event_fire",
                    "value": '{"event": 3, "email": "c@x.io"}',
                },
            ),
        ]
    assert [a.status_code for a in answers] == [200] * 5
    ids = [a.json()["message_id"] for i, a in enumerate(answers) if i != 3]
    ids[3:3] = answers[3].json()["message_ids"]
    verdicts = stack.wait_for_outcomes(ws, ids)
    assert [verdicts[m] for m in ids] == [
        ACCEPTED,
        ACCEPTED,
        ACCEPTED,
        ACCEPTED,
        ("discarded", "duplicate_order"),
        ACCEPTED,
    ]
    with stack.engine.connect() as conn:
        from sluice.store.schema import contacts

        people = conn.execute(
            select(contacts.c.user_id, contacts.c.email)
            .where(contacts.c.workspace_id == ws)
            .order_by(contacts.c.id)
        ).all()
    # The user/event login and Bento's events create contacts; Bunce and Platform.ly do not.
    assert [tuple(p) for p in people] == [("ue-1", None), (None, "b@x.io")]


def test_prefer_wait_answers_with_the_workers_verdict(stack: Stack) -> None:
    workspace = stack.new_workspace()
    ws, key = workspace.workspace_id, workspace.write_key
    wait = {"Prefer": "wait=20"}
    order = {"userId": "u", "event": "Order Completed", "properties": {"orderId": "w-1"}}
    with httpx.Client(base_url=stack.gateway_url, auth=(key, ""), timeout=30) as http:
        first = http.post("/v1/track", json=order, headers=wait)
        second = http.post("/v1/track", json=order, headers=wait)
        batch = http.post(
            "/v1/batch",
            headers=wait,
            json={
                "batch": [
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "Email Opened",
                        "timestamp": "2026-11-01T10:00:00Z",
                    },
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "Email Opened",
                        "timestamp": "2026-11-01T10:05:00Z",
                    },
                    {"type": "track", "userId": "u"},
                ]
            },
        )
        bento = http.post(
            f"/compat/bento/api/v1/batch/events?site_uuid={ws}",
            headers=wait,
            auth=(key, ""),
            json={"events": [{"type": "$x", "email": "b@x.io"}]},
        )
    assert first.headers["preference-applied"] == "wait=20"
    assert (first.json()["status"], first.json()["reason"]) == ("accepted", None)
    assert (second.json()["status"], second.json()["reason"]) == ("discarded", "duplicate_order")
    assert "was confirmed by message" in second.json()["detail"]
    assert [(r["status"], r.get("reason")) for r in batch.json()["results"]] == [
        ("accepted", None),
        ("discarded", "throttled"),
        ("rejected", None),
    ]
    assert bento.json()["results"] == 1
    assert [o["status"] for o in bento.json()["outcomes"]] == ["accepted"]
