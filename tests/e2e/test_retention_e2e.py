"""Retention with real processes: `sluice purge` removes old events (with their outcomes,
triggers and delivery attempts) while a worker ingests a steady stream of new ones, and
nothing of the new ones is lost; a worker's periodic retention applies SLUICE_RETENTION_DAYS
and a workspace's retention_days, and leaves a workspace that keeps everything alone."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select

from sluice.actions import Action
from sluice.producer import EventClient
from sluice.store.automations import add_automation
from sluice.store.schema import delivery_attempts, events, outcomes, trigger_deliveries
from sluice.store.workspaces import configure_workspace, create_workspace
from tests.conftest import CRASH_DB_OFFSET, STACK_DELIVERY_SETTINGS, Stack, make_known, sluice_env
from tests.processes import WORKER_COMMAND, SluiceProcess, sluice_executable, with_option
from tests.receiver import Reply, running_receiver
from tests.services import redis_db_of, with_redis_db

OLD_EVENTS = 2_000
TEN_YEARS_S = str(10 * 365 * 86_400)


def wait_for(
    condition: Callable[[], Any], what: str, timeout_s: float = 90, log: Path | None = None
) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            pytest.fail(f"no {what} within {timeout_s}s\n{tail}")
        time.sleep(0.2)
    return found


def message_ids(engine: Engine, table: Any, ws: str) -> set[str]:
    with engine.connect() as conn:
        query = select(table.c.message_id).where(table.c.workspace_id == ws)
        return set(conn.execute(query).scalars())


def attempts_of(engine: Engine, ws: str, ids: set[str]) -> int:
    """How many delivery attempts the triggers of these events have."""
    query = (
        select(trigger_deliveries.c.message_id)
        .select_from(delivery_attempts.join(trigger_deliveries))
        .where(trigger_deliveries.c.workspace_id == ws)
    )
    with engine.connect() as conn:
        return sum(1 for message_id in conn.execute(query).scalars() if message_id in ids)


def send_at(
    redis_url: str, ws: str, when: datetime, count: int, name: str = "Signed Up"
) -> list[str]:
    """``count`` events of ``ws`` that happened at ``when``, through EventClient."""
    with EventClient(ws, broker_url=redis_url) as client:
        return client.send_batch(
            {"kind": "custom", "name": name, "user_id": f"u{i}", "timestamp": when.isoformat()}
            for i in range(count)
        )


@pytest.fixture
def delivering_worker(stack: Stack, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A worker of its own (its own Redis database) that ingests and delivers, and makes
    triggers for events of any age (so that old events have triggers and attempts)."""
    url = with_redis_db(stack.redis_url, redis_db_of(stack.redis_url) + CRASH_DB_OFFSET)
    redis.Redis.from_url(url).flushdb()
    env = sluice_env(
        url, stack.database_url, **STACK_DELIVERY_SETTINGS, SLUICE_TRIGGER_MAX_AGE_S=TEN_YEARS_S
    )
    command = [arg for arg in WORKER_COMMAND if arg != "--no-deliver"]
    worker = SluiceProcess(with_option(command, "--concurrency", "2"), env, tmp_path / "w.log")
    worker.start()
    try:
        worker.wait_for_log(" ready.")
        yield url, worker.log_path
    finally:
        worker.stop()


def test_purge_while_ingesting_removes_the_old_and_loses_nothing_new(
    stack: Stack, delivering_worker: tuple[str, Path]
) -> None:
    url, log = delivering_worker
    engine = stack.engine
    ws = create_workspace(engine, "purged").workspace_id
    other = create_workspace(engine, "untouched").workspace_id
    make_known(url, ws, other)
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=400)
    with running_receiver() as receiver:
        hook = receiver.script("/purge-hook", [Reply(200)])
        add_automation(
            engine, ws, "Signed Up", Action.WEBHOOK, target=hook, allow_private_webhooks=True
        )
        old = set(send_at(url, ws, long_ago, OLD_EVENTS))
        elsewhere = set(send_at(url, other, long_ago, 50))
        # Everything of the old events is in place: outcomes, triggers, their attempts.
        wait_for(lambda: message_ids(engine, outcomes, ws) >= old, "old outcomes", log=log)
        wait_for(lambda: attempts_of(engine, ws, old) >= OLD_EVENTS, "old attempts", log=log)
        assert message_ids(engine, events, ws) == old

        sent: list[str] = []
        streaming = threading.Event()
        stop = threading.Event()

        def stream() -> None:  # a steady stream of new events: 10 every 20 ms
            with EventClient(ws, broker_url=url) as client:
                while not stop.is_set():
                    sent.extend(
                        client.send_batch(
                            {"kind": "custom", "name": "Signed Up", "user_id": f"n{len(sent) + i}"}
                            for i in range(10)
                        )
                    )
                    streaming.set()
                    time.sleep(0.02)

        sender = threading.Thread(target=stream)
        sender.start()
        try:
            streaming.wait(10)
            before = (now - timedelta(days=200)).isoformat()
            purge = subprocess.run(
                [sluice_executable(), "purge", ws, "--before", before, "--batch", "200", "--json"],
                env={**os.environ, **sluice_env(url, stack.database_url)},
                capture_output=True,
                text=True,
                timeout=300,
            )
            time.sleep(1)  # the stream goes on after the purge as well
        finally:
            stop.set()
            sender.join(30)
        assert purge.returncode == 0, purge.stderr + purge.stdout
        report = json.loads(purge.stdout)

        new = set(sent)
        assert len(new) >= 100
        wait_for(lambda: message_ids(engine, outcomes, ws) >= new, "new outcomes", log=log)
        wait_for(lambda: attempts_of(engine, ws, new) >= len(new), "new attempts", log=log)

    assert report["removed"]["events"] == OLD_EVENTS
    assert report["removed"]["outcomes"] == OLD_EVENTS
    assert report["removed"]["trigger_deliveries"] == OLD_EVENTS
    assert report["removed"]["delivery_attempts"] >= OLD_EVENTS
    assert report["transactions"] >= OLD_EVENTS // 200 and report["rows_per_s"] > 0
    # Nothing of the old events is left; every new one has its event, outcome and trigger.
    assert message_ids(engine, events, ws) == new
    assert message_ids(engine, outcomes, ws) == new
    assert message_ids(engine, trigger_deliveries, ws) == new
    assert attempts_of(engine, ws, old) == 0
    with engine.connect() as conn:
        statuses = conn.execute(
            select(outcomes.c.status, func.count())
            .where(outcomes.c.workspace_id == ws)
            .group_by(outcomes.c.status)
        ).all()
    assert dict(statuses) == {"accepted": len(new)}
    # Another workspace's old events are not touched.
    assert message_ids(engine, events, other) == elsewhere
    assert message_ids(engine, outcomes, other) == elsewhere


def test_the_worker_applies_the_retention_by_default_and_per_workspace(
    stack: Stack, tmp_path: Path
) -> None:
    engine = stack.engine
    by_default = create_workspace(engine, "30 days by default").workspace_id
    shorter = create_workspace(engine, "7 days").workspace_id
    forever = create_workspace(engine, "keeps everything").workspace_id
    make_known(stack.redis_url, by_default, shorter, forever)
    configure_workspace(engine, shorter, {"retention_days": "7"})
    configure_workspace(engine, forever, {"retention_days": "0"})
    now = datetime.now(UTC)
    sent = {
        "default_old": send_at(stack.redis_url, by_default, now - timedelta(days=40), 30),
        "default_new": send_at(stack.redis_url, by_default, now - timedelta(days=10), 20),
        "shorter_old": send_at(stack.redis_url, shorter, now - timedelta(days=10), 30),
        "shorter_new": send_at(stack.redis_url, shorter, now - timedelta(days=1), 20),
        "forever": send_at(stack.redis_url, forever, now - timedelta(days=400), 25),
    }
    for ws, keys in (
        (by_default, ("default_old", "default_new")),
        (shorter, ("shorter_old", "shorter_new")),
        (forever, ("forever",)),
    ):
        stack.wait_for_outcomes(ws, [m for key in keys for m in sent[key]])

    # A second worker, on a Redis database of its own, with the retention on: it sweeps
    # every second (the stack's worker has no retention).
    url = with_redis_db(stack.redis_url, redis_db_of(stack.redis_url) + CRASH_DB_OFFSET)
    redis.Redis.from_url(url).flushdb()
    env = sluice_env(
        url, stack.database_url, SLUICE_RETENTION_DAYS="30", SLUICE_RETENTION_SWEEP_S="1"
    )
    worker = SluiceProcess(WORKER_COMMAND, env, tmp_path / "retention.log").start()
    try:
        worker.wait_for_log(" ready.")

        def swept() -> bool:
            return message_ids(engine, events, by_default) == set(
                sent["default_new"]
            ) and message_ids(engine, events, shorter) == set(sent["shorter_new"])

        wait_for(swept, "retention sweep", timeout_s=60, log=worker.log_path)
    finally:
        worker.stop()
    assert message_ids(engine, outcomes, by_default) == set(sent["default_new"])
    assert message_ids(engine, outcomes, shorter) == set(sent["shorter_new"])
    assert message_ids(engine, events, forever) == set(sent["forever"])
    assert message_ids(engine, outcomes, forever) == set(sent["forever"])
    assert "retention: purged" in worker.log_text()
