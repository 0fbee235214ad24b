"""Erasing a person with real processes (docs/data-lifecycle.md, Erasure): events decided by
the real worker (accepted, duplicates, an order, throttled email opens), webhooks delivered
by the real deliverer to a real receiver (one of them under way during the erasure), a
poison batch dead-lettered by the worker; then `sluice contact delete` as a subprocess, and
nothing of the person is left in any table or in Redis, while another contact of the same
workspace is untouched. On SQLite and PostgreSQL (``database_url`` is parametrised)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import subprocess
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from sqlalchemy import JSON, Engine, String, func, select

from sluice.actions import Action
from sluice.producer import EventClient, keys
from sluice.producer.events import utc_now
from sluice.producer.wire import INGEST_QUEUE, INGEST_TASK, SERIALIZER, register_serializer
from sluice.store.automations import add_automation
from sluice.store.schema import (
    contacts,
    dead_letters,
    delivery_attempts,
    erasures,
    events,
    metadata,
    trigger_deliveries,
)
from sluice.store.workspaces import NewWorkspace
from tests.conftest import Stack, sluice_env
from tests.processes import sluice_executable
from tests.receiver import Receiver, Reply, running_receiver

# The receiver holds a webhook under way this long (well below the stack's 2.5 s timeout,
# so that it is not retried), so that the erasure may start while a deliverer holds it.
SLOW_WEBHOOK_S = 1.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def sluice(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sluice_executable(), *args],
        env={**os.environ, **sluice_env(stack.redis_url, stack.database_url)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return found


def send(stack: Stack, workspace: NewWorkspace, *items: Mapping[str, object]) -> list[str]:
    with EventClient(workspace.workspace_id, broker_url=stack.redis_url) as client:
        return client.send_batch(items)


def mentions(engine: Engine, needles: list[str]) -> set[tuple[str, str, str]]:
    """(table, column, needle) for every text or JSON column of every table that holds one
    of the needles, in any case."""
    lowered = [needle.lower() for needle in needles]
    found = set()
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | JSON)]
            for row in conn.execute(select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    text = (value if isinstance(value, str) else json.dumps(value)).lower()
                    found |= {(table.name, column.name, n) for n in lowered if n in text}
    return found


def _readable(value: Any) -> list[bytes]:
    """A Redis value, and what it holds compressed (the journal) or base64-encoded (a queued
    message's body)."""
    blob = value if isinstance(value, bytes) else str(value).encode()
    found = [blob]
    with contextlib.suppress(zlib.error):
        found.append(zlib.decompress(blob))
    try:
        message = json.loads(blob)
    except ValueError:
        return found
    if isinstance(message, dict) and isinstance(message.get("body"), str):
        with contextlib.suppress(ValueError):
            found.append(base64.b64decode(message["body"]))
    return found


def redis_mentions(client: redis.Redis, needles: list[str]) -> set[tuple[str, str]]:
    """(key, needle) for every key whose name or value names one of the needles."""
    lowered = [needle.lower() for needle in needles]
    found = set()
    for key in client.scan_iter(count=1000):
        kind = _readable(client.type(key))[0].decode()
        values: list[Any] = [key]
        if kind == "string":
            values.append(client.get(key))
        elif kind == "hash":
            values += [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "zset":
            values += client.zrange(key, 0, -1)
        elif kind == "list":
            values += client.lrange(key, 0, -1)
        elif kind == "set":
            values += list(client.smembers(key))
        blobs = [blob for value in values if value is not None for blob in _readable(value)]
        text = b"\n".join(blobs).decode(errors="replace").lower()
        name = _readable(key)[0].decode(errors="replace")
        found |= {(name, n) for n in lowered if n in text}
    return found


def rows_of(stack: Stack, workspace_id: str, user_id: str, email: str) -> dict[str, Any]:
    """What is stored of one person whose events carry ``user_id`` or ``email``."""
    with stack.engine.connect() as conn:
        message_ids = sorted(
            conn.scalars(
                select(events.c.message_id).where(
                    events.c.workspace_id == workspace_id,
                    (events.c.user_id == user_id) | (func.lower(events.c.email) == email),
                )
            )
        )
        contact = conn.execute(
            select(contacts.c.user_id, contacts.c.email, contacts.c.attributes).where(
                contacts.c.workspace_id == workspace_id, contacts.c.user_id == user_id
            )
        ).all()
        triggers = conn.execute(
            select(trigger_deliveries.c.id, trigger_deliveries.c.status).where(
                trigger_deliveries.c.message_id.in_(message_ids)
            )
        ).all()
        attempts = conn.scalar(
            select(func.count()).where(delivery_attempts.c.trigger_id.in_([t.id for t in triggers]))
        )
    return {
        "events": message_ids,
        "outcomes": stack.outcomes_of(workspace_id),
        "contact": [tuple(row) for row in contact],
        "triggers": sorted(tuple(t) for t in triggers),
        "attempts": attempts,
    }


def event_status(stack: Stack, workspace: NewWorkspace, message_id: str) -> int:
    answer = httpx.get(
        f"{stack.gateway_url}/v1/events/{message_id}", auth=(workspace.write_key, ""), timeout=10
    )
    return answer.status_code


def poison_letter(stack: Stack, batch_id: str, *items: Mapping[str, object]) -> int:
    """A batch the worker cannot decode (an unknown envelope version), dead-lettered whole."""
    register_serializer()
    app = Celery(broker=stack.redis_url, set_as_current=False)
    poison = {"v": 99, "batch_id": batch_id, "events": list(items)}
    app.send_task(INGEST_TASK, args=[poison], queue=INGEST_QUEUE, serializer=SERIALIZER)
    app.close()

    def letter() -> int | None:
        query = select(dead_letters.c.id).where(dead_letters.c.batch_id == batch_id)
        with stack.engine.connect() as conn:
            return conn.execute(query).scalar()

    found: int = wait_for(letter, "the poison batch's dead letter")
    return found


def test_contact_delete_leaves_nothing_of_the_person(stack: Stack, receiver: Receiver) -> None:
    tag = uuid.uuid4().hex[:10]
    workspace = stack.new_workspace()
    ws = workspace.workspace_id
    user_id, email = f"erase-u-{tag}", f"Erase.Me+{tag}@Example.com"
    other_id, other_email = f"keep-u-{tag}", f"keep-{tag}@example.com"
    order_id = f"ord-{tag}"
    hooks = set()
    for on, path, replies in (
        ("Signed Up", "/signed-up", [Reply(204)]),
        ("Upgraded", "/slow", [Reply(200, delay_s=SLOW_WEBHOOK_S)]),
    ):
        hook = add_automation(
            stack.engine,
            ws,
            on,
            Action.WEBHOOK,
            target=receiver.script(path, replies),
            allow_private_webhooks=True,
        )
        hooks.add(hook.id)
    t0 = utc_now() - timedelta(hours=1)

    # The person: a login with both identifiers (the contact links them), then events that
    # carry one of them only, in another case for the email.
    login, signed_up, viewed = send(
        stack,
        workspace,
        {"kind": "login", "user_id": user_id, "email": email, "traits": {"name": "Erase Me"}},
        {"kind": "custom", "name": "Signed Up", "user_id": user_id, "traits": {"mail": email}},
        {"kind": "custom", "name": "Viewed", "email": email.upper(), "properties": {"p": 1}},
    )
    order = {"kind": "confirmation", "user_id": user_id, "properties": {"orderId": order_id}}
    (confirmed,) = send(stack, workspace, order)
    stack.wait_for_outcomes(ws, [login, signed_up, viewed, confirmed])
    (confirmed_again,) = send(stack, workspace, order)
    opened, opened_again = send(
        stack,
        workspace,
        {"kind": "email_open", "email": email, "timestamp": t0.isoformat()},
        {
            "kind": "email_open",
            "email": email,
            "timestamp": (t0 + timedelta(minutes=1)).isoformat(),
        },
    )
    send(
        stack,
        workspace,
        {"kind": "custom", "name": "Signed Up", "user_id": user_id, "message_id": signed_up},
    )
    # Another contact of the same workspace, which the erasure must not touch.
    other_ids = send(
        stack,
        workspace,
        {"kind": "login", "user_id": other_id, "email": other_email},
        {"kind": "custom", "name": "Signed Up", "user_id": other_id},
        {"kind": "email_open", "user_id": other_id, "timestamp": t0.isoformat()},
    )
    verdicts = stack.wait_for_outcomes(ws, [confirmed_again, opened, opened_again, *other_ids])
    assert verdicts[confirmed_again] == ("discarded", "duplicate_order")
    assert verdicts[opened] == ("accepted", None)
    assert verdicts[opened_again] == ("discarded", "throttled")
    stack.wait_until_idle()
    assert stack.repeats_of(ws).get(signed_up) == 1  # the duplicate message id
    letter_id = poison_letter(
        stack,
        f"poison-{tag}",
        {
            "workspace_id": ws,
            "message_id": f"dl-a-{tag}",
            "kind": "custom",
            "name": "X",
            "email": email,
        },
        {
            "workspace_id": ws,
            "message_id": f"dl-b-{tag}",
            "kind": "custom",
            "name": "X",
            "user_id": other_id,
        },
    )
    receiver.wait_for("/signed-up", 2)
    wait_for(
        lambda: (
            len(
                [
                    t
                    for t in rows_of(stack, ws, user_id, email.lower())["triggers"]
                    if t[1] == "delivered"
                ]
            )
            == 1
        ),
        "the person's webhook delivered",
    )

    # What is stored before: the person is everywhere the erasure must look.
    theirs = [login, signed_up, viewed, confirmed, confirmed_again, opened, opened_again]
    needles = [user_id, email, *theirs, f"dl-a-{tag}"]
    before = {(table, needle) for table, _, needle in mentions(stack.engine, needles)}
    for table in (
        "contacts",
        "events",
        "outcomes",
        "repeats",
        "order_claims",
        "trigger_deliveries",
        "dead_letters",
    ):
        assert table in {t for t, _ in before}, (table, before)
    client = stack.redis
    opens_key = keys.email_opens(ws, f"email:{email.lower()}")
    assert client.exists(opens_key) and client.get(keys.order_claim(ws, order_id)) == (
        confirmed.encode()
    )
    assert rows_of(stack, ws, user_id, email.lower())["attempts"] == 1
    assert event_status(stack, workspace, signed_up) == 200
    assert event_status(stack, workspace, opened_again) == 200
    other_before = rows_of(stack, ws, other_id, other_email)
    assert other_before["attempts"] == 1 and len(other_before["events"]) == 3
    other_opens = keys.email_opens(ws, f"id:{other_id}")
    assert client.exists(other_opens)

    # A webhook of the person under way: the erasure waits for its record, then takes it.
    (upgraded,) = send(stack, workspace, {"kind": "custom", "name": "Upgraded", "user_id": user_id})
    receiver.wait_for("/slow", 1)
    deliverer_log_at = len(stack.deliverer.log_text())
    started = time.monotonic()
    result = sluice(
        stack,
        "contact",
        "delete",
        ws,
        "--email",
        email.upper(),
        "--requested-by",
        "dpo@example.com",
        "--json",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert len(receiver.requests_to("/slow")) == 1
    assert time.monotonic() - started < 60

    removed = report["removed"]
    # A producer marks its events queued after publishing them; a worker quicker than that
    # clears no mark, which stays until it expires. The erasure deletes it (scanned below).
    assert {k: v for k, v in removed.items() if k != "redis_pending_marks"} == {
        "contacts": 1,
        "events": 6,  # login, signed up, viewed, confirmed, opened, upgraded
        "outcomes": 8,  # those and the two discarded ones
        "repeats": 1,
        "order_claims": 1,
        "trigger_deliveries": 2,
        "delivery_attempts": 2,
        "dead_letters": 0,
        "dead_letter_events": 1,
        "redis_order_claims": 1,
        "redis_email_opens": 1,
    }
    subject = hashlib.sha256(f"{ws}:email:{email.lower()}".encode()).hexdigest()
    assert report["subject"] == subject and report["identifier_kind"] == "email"
    assert report["requested_by"] == "dpo@example.com"

    # Nothing of the person is left, in any table or in Redis.
    assert mentions(stack.engine, [*needles, upgraded]) == set()
    assert redis_mentions(client, [*needles, upgraded]) == set()
    for message_id in (signed_up, opened_again, upgraded):
        assert event_status(stack, workspace, message_id) == 404
    # (The stack is shared: attempts of other tests' automations may fail meanwhile.)
    logged = stack.deliverer.log_text()[deliverer_log_at:].splitlines()
    assert not [line for line in logged if "failed" in line and not _of_others(line, hooks)]

    # The other contact is untouched, and so is their event in the dead letter.
    assert rows_of(stack, ws, other_id, other_email) == {
        **other_before,
        "outcomes": {k: v for k, v in other_before["outcomes"].items() if k not in theirs},
    }
    assert client.exists(other_opens)
    with stack.engine.connect() as conn:
        letter = conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).one()
        recorded = conn.execute(select(erasures).where(erasures.c.workspace_id == ws)).all()
    assert letter.events is None  # a poison batch's count stays unknown
    assert [e["message_id"] for e in json.loads(letter.payload)["events"]] == [f"dl-b-{tag}"]
    assert event_status(stack, workspace, other_ids[1]) == 200

    # The record: who, when, how much; the identifier only as its hash.
    [row] = recorded
    assert (row.subject, row.identifier_kind, row.requested_by, row.removed) == (
        subject,
        "email",
        "dpo@example.com",
        removed,
    )
    asked = sluice(stack, "contact", "erasures", ws, "--email", email, "--json")
    assert [item["erasure_id"] for item in json.loads(asked.stdout)] == [report["erasure_id"]]


def test_contact_delete_as_text_refusals_and_the_erasure_asked_about(stack: Stack) -> None:
    workspace = stack.new_workspace()
    ws, user_id = workspace.workspace_id, f"nobody-{uuid.uuid4().hex[:8]}"

    both = sluice(stack, "contact", "delete", ws, "--email", "a@b.c", "--user-id", "u")
    assert both.returncode == 2 and "exactly one of --email E, --user-id U" in both.stderr
    unknown = sluice(stack, "contact", "delete", "no-such-workspace", "--user-id", user_id)
    assert unknown.returncode == 1 and "no workspace 'no-such-workspace'" in unknown.stderr
    assert sluice(stack, "contact", "erasures", ws, "--user-id", user_id).stdout.startswith(
        "no erasure recorded"
    )

    # Nothing stored of this person: the erasure still happens, and is recorded.
    done = sluice(stack, "contact", "delete", ws, "--user-id", user_id)
    assert done.returncode == 0, done.stderr
    assert "by user_id" in done.stdout and "  events:" in done.stdout
    assert user_id not in done.stdout
    [row] = json.loads(
        sluice(stack, "contact", "erasures", ws, "--user-id", user_id, "--json").stdout
    )
    assert row["requested_by"] and row["requested_by"] != "dpo@example.com"  # the OS user
    assert set(row["removed"].values()) == {0}
    assert f"erasure {row['erasure_id']}" in done.stdout


_ATTEMPT = re.compile(r"trigger \S+ attempt \d+ \(\S+ (\S+)\)")


def _of_others(line: str, automations: set[str]) -> bool:
    """Whether a deliverer's log line is about an attempt of another automation."""
    found = _ATTEMPT.search(line)
    return found is not None and found[1] not in automations
