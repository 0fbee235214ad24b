"""Dead letters with real processes: `sluice dlq list|show|replay` against a running worker,
for poison (it fails again) and for a batch that timed out while the database was locked
(after the lock is gone, the replay gives its events their real verdicts, once)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.engine import make_url

from sluice.producer import EventClient, keys
from sluice.producer.wire import INGEST_QUEUE, INGEST_TASK, SERIALIZER, register_serializer
from sluice.store.dead_letters import list_dead_letters
from sluice.store.schema import dead_letters, outcomes
from tests.conftest import CRASH_DB_OFFSET, Stack, sluice_env
from tests.processes import WORKER_COMMAND, SluiceProcess, sluice_executable
from tests.services import redis_db_of, with_redis_db

# A batch stuck behind the lock hits its time limit and comes back once: with one delivery
# allowed, the second is dead-lettered. The visibility timeout stays over twice the limit.
TIME_LIMIT_S = "2"
VISIBILITY_TIMEOUT_S = "6"


def sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sluice_executable(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def sluice_json(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = sluice(env, *args, "--json")
    assert result.returncode == code, result.stderr + result.stdout
    return json.loads(result.stdout)


def wait_for(
    condition: Callable[[], Any], what: str, timeout_s: float = 60, log: str | Path = ""
) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if time.monotonic() > deadline:
            tail = Path(log).read_text(errors="replace")[-4000:] if log else ""
            pytest.fail(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)
    return found


def test_poison_is_listed_shown_and_its_replay_fails_again(stack: Stack) -> None:
    env = sluice_env(stack.redis_url, stack.database_url)
    batch_id = f"poison-{uuid.uuid4().hex[:8]}"
    poison = {"v": 99, "batch_id": batch_id, "events": [{}]}
    register_serializer()
    app = Celery(broker=stack.redis_url, set_as_current=False)
    app.send_task(INGEST_TASK, args=[poison], queue=INGEST_QUEUE, serializer=SERIALIZER)
    app.close()

    def letter_of(batch: str) -> int | None:
        query = select(dead_letters.c.id).where(dead_letters.c.batch_id == batch)
        with stack.engine.connect() as conn:
            return conn.execute(query).scalar()

    letter_id = wait_for(lambda: letter_of(batch_id), "the poison's dead letter")
    listed = {item["id"]: item for item in sluice_json(env, "dlq", "list", "--limit", "500")}
    assert {k: listed[letter_id][k] for k in ("reason", "batch_id", "events", "workspaces")} == {
        "reason": "poison envelope",
        "batch_id": batch_id,
        "events": None,
        "workspaces": [],
    }
    assert {"created_at", "replayed_at", "status"} <= set(listed[letter_id])
    assert listed[letter_id]["status"] == "open"
    text = sluice(env, "dlq", "list").stdout
    assert f"{letter_id}  " in text and "poison envelope" in text

    shown = sluice_json(env, "dlq", "show", str(letter_id))
    assert shown["payload"] == poison and shown["replayable"] is True
    assert "unsupported envelope version 99" in shown["detail"]
    assert "unsupported envelope version 99" in sluice(env, "dlq", "show", str(letter_id)).stdout
    assert sluice(env, "dlq", "show", "999999999").returncode == 1

    [replayed] = sluice_json(env, "dlq", "replay", str(letter_id), "--wait-s", "60", code=1)
    assert replayed["status"] == "failed_again", replayed
    again = replayed["failed_again"]
    assert again["reason"] == "poison envelope" and again["id"] != letter_id
    assert letter_of(replayed["batch_id"]) == again["id"]

    second = sluice(env, "dlq", "replay", str(letter_id))
    assert second.returncode == 0, second.stderr
    assert "already replayed as batch" in second.stdout
    assert f"failed again: dead letter {again['id']}" in second.stdout
    assert letter_of(replayed["batch_id"]) == again["id"]  # nothing was published again

    counts = sluice_json(env, "stats")["dead_letters"]
    assert counts["total"] >= 2 and counts["replayed"] >= 1 and counts["open"] >= 1
    assert "dead letters:" in sluice(env, "stats").stdout


@contextmanager
def events_blocked(database_url: str, workspace_id: str) -> Iterator[Callable[[], None]]:
    """Keep a batch of ``workspace_id`` from storing its events; yields the fix.

    SQLite: hold its one write lock, so the batch outlives its time limit, is killed and
    comes back until its deliveries run out. PostgreSQL does not get there: a query cut off
    by the time limit fails as a transient error and is retried as long as the lock lasts
    (``sluice.worker.failures``). There the database refuses the rows instead (a trigger,
    as a failing maintenance change would), which the worker takes for a bug."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        lite = sqlite3.connect(str(url.database), isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")

        def release() -> None:
            if lite.in_transaction:
                lite.execute("ROLLBACK")

        try:
            yield release
        finally:
            release()
            lite.close()
        return
    name = f"refuse_{workspace_id.replace('-', '_')[:40]}"
    conn = psycopg.connect(url.set(drivername="postgresql").render_as_string(False))
    conn.autocommit = True
    conn.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'events are read-only for maintenance'; END $$"
    )
    conn.execute(
        f"CREATE TRIGGER {name} BEFORE INSERT ON events FOR EACH ROW "
        f"WHEN (NEW.workspace_id = '{workspace_id}') EXECUTE FUNCTION {name}()"
    )

    def drop() -> None:
        conn.execute(f"DROP TRIGGER IF EXISTS {name} ON events")
        conn.execute(f"DROP FUNCTION IF EXISTS {name}()")

    try:
        yield drop
    finally:
        drop()
        conn.close()


@pytest.fixture
def impatient_worker(stack: Stack, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A worker of its own (its own Redis database) that allows one delivery per batch."""
    url = with_redis_db(stack.redis_url, redis_db_of(stack.redis_url) + CRASH_DB_OFFSET)
    redis.Redis.from_url(url).flushdb()
    env = sluice_env(
        url,
        stack.database_url,
        SLUICE_MAX_DELIVERIES="1",
        SLUICE_TASK_TIME_LIMIT_S=TIME_LIMIT_S,
        SLUICE_VISIBILITY_TIMEOUT_S=VISIBILITY_TIMEOUT_S,
    )
    worker = SluiceProcess(WORKER_COMMAND, env, tmp_path / "worker.log").start()
    try:
        worker.wait_for_log(" ready.")
        yield env, worker.log_path
    finally:
        worker.stop()


def test_a_batch_dead_lettered_for_a_cause_since_fixed_gets_real_verdicts_when_replayed(
    stack: Stack, impatient_worker: tuple[dict[str, str], Path]
) -> None:
    env, log = impatient_worker
    ws = stack.new_workspace(env["SLUICE_REDIS_URL"]).workspace_id
    client = redis.Redis.from_url(env["SLUICE_REDIS_URL"])
    sqlite = make_url(stack.database_url).get_backend_name() == "sqlite"
    with events_blocked(stack.database_url, ws) as fix:
        with EventClient(ws, broker_url=env["SLUICE_REDIS_URL"]) as sender:
            message_ids = sender.send_batch(
                {"kind": "custom", "name": "Viewed", "user_id": f"u{i}"} for i in range(5)
            )
        [batch_id] = [
            r.decode() if isinstance(r, bytes) else r for r in client.hkeys(keys.journal())
        ]

        def dead_lettered() -> list[dict[str, Any]]:
            return list_dead_letters(stack.engine, ws)

        def timed_out() -> bool:
            return int(client.get(keys.deliveries(batch_id, 0)) or 0) >= 2

        wait_for(lambda: timed_out() or dead_lettered(), "the batch to fail", log=log)
        fix()
        [letter] = wait_for(dead_lettered, "the dead letter", log=log)
    if sqlite:  # writing the dead letter waits for the lock too: a delivery or two more
        assert re.fullmatch(r"delivered \d+ times without finishing", letter["reason"]), letter
    else:
        assert letter["reason"].startswith("unexpected error: "), letter
        shown = sluice_json(env, "dlq", "show", str(letter["id"]))
        assert "events are read-only for maintenance" in shown["detail"]
    assert (letter["batch_id"], letter["events"], letter["workspaces"]) == (batch_id, 5, [ws])
    provisional = stack.wait_for_outcomes(ws, message_ids)
    assert set(provisional.values()) == {("rejected", "invalid")}
    with stack.engine.connect() as conn:
        details = conn.execute(
            select(outcomes.c.detail).where(outcomes.c.workspace_id == ws)
        ).scalars()
        assert set(details) == {
            f"not processed: {letter['reason']}; dead letter {letter['id']} "
            f"(sluice dlq show {letter['id']})"
        }
    assert stack.event_rows_per_message(ws) == {}

    [replayed] = sluice_json(env, "dlq", "replay", str(letter["id"]), "--wait-s", "60")
    assert (replayed["status"], replayed["decided"]) == ("decided", {"accepted": 5}), replayed
    assert stack.outcomes_of(ws) == {m: ("accepted", None) for m in message_ids}
    assert stack.event_rows_per_message(ws) == {m: 1 for m in message_ids}
    wait_for(lambda: client.hlen(keys.journal()) == 0, "the journal to forget the replay")

    text = sluice(env, "dlq", "replay", str(letter["id"]))
    assert text.returncode == 0 and "already replayed as batch" in text.stdout
    assert client.llen(INGEST_QUEUE) == 0 and client.hlen(keys.journal()) == 0
    assert stack.repeats_of(ws) == {}
    assert stack.event_rows_per_message(ws) == {m: 1 for m in message_ids}
    [after] = list_dead_letters(stack.engine, ws)
    assert (after["status"], after["replay_batch_id"]) == ("replayed", replayed["batch_id"])
    assert sluice_json(env, "stats", ws)["dead_letters"] == {
        "total": 1,
        "open": 0,
        "replayed": 1,
    }
