"""The restrictions with real worker processes: several workers racing on one order id and
one user's email opens, and a worker killed with SIGKILL in the middle of a batch."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from sluice.producer import Event, EventClient, keys
from sluice.producer.envelope import Envelope
from sluice.producer.transport import BrokerTransport
from sluice.store.schema import contacts, events, order_claims, outcomes
from tests.conftest import CRASH_DB_OFFSET, Stack, sluice_env
from tests.processes import WORKER_COMMAND, SluiceProcess, children_of, sluice_executable
from tests.services import redis_db_of, with_redis_db

EVENT_TIME = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def more_workers(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[SluiceProcess]]:
    """Two more worker processes beside the stack's: three workers, six pool processes."""
    logs = tmp_path_factory.mktemp("more-workers")
    env = sluice_env(stack.redis_url, stack.database_url)
    extra = [
        SluiceProcess(
            [*WORKER_COMMAND, "--hostname", f"racer{i}@%h"], env, logs / f"worker{i}.log"
        ).start()
        for i in range(2)
    ]
    try:
        for worker in extra:
            worker.wait_for_log(" ready.")
        yield extra
    finally:
        for worker in extra:
            worker.stop()


def test_racing_workers_accept_one_confirmation_per_order_and_one_open_per_window(
    stack: Stack, more_workers: list[SluiceProcess]
) -> None:
    workspace = stack.new_workspace()
    ws = workspace.workspace_id

    def batch(n: int) -> Envelope:
        return Envelope(
            events=[
                *(
                    Event(
                        workspace_id=ws,
                        kind="confirmation",
                        name="confirmation",
                        user_id=f"buyer{n}",
                        properties={"orderId": "o-race"},
                    )
                    for _ in range(4)
                ),
                *(
                    Event(
                        workspace_id=ws,
                        kind="email_open",
                        name="email_open",
                        user_id="racer",
                        timestamp=EVENT_TIME + timedelta(minutes=n % 19),
                    )
                    for _ in range(4)
                ),
            ]
        )

    envelopes = [batch(n) for n in range(40)]
    transport = BrokerTransport(stack.redis_url)
    for envelope in envelopes:
        transport.publish(envelope)
    transport.close()

    ids = [event.message_id for envelope in envelopes for event in envelope.events]
    verdicts = stack.wait_for_outcomes(ws, ids)
    kinds = {e.message_id: e.kind for envelope in envelopes for e in envelope.events}
    confirmations = [verdicts[m] for m in ids if kinds[m] == "confirmation"]
    opens = [verdicts[m] for m in ids if kinds[m] == "email_open"]
    assert confirmations.count(("accepted", None)) == 1
    assert confirmations.count(("discarded", "duplicate_order")) == 159
    assert opens.count(("accepted", None)) == 1  # all within 19 minutes of each other
    assert opens.count(("discarded", "throttled")) == 159
    with stack.engine.connect() as conn:
        claims = conn.execute(select(order_claims).where(order_claims.c.workspace_id == ws)).all()
        stored = conn.execute(
            select(func.count()).select_from(events).where(events.c.workspace_id == ws)
        ).scalar_one()
    assert [(c.order_id, verdicts[c.message_id]) for c in claims] == [
        ("o-race", ("accepted", None))
    ]
    assert stored == 2
    busy = [w for w in [stack.worker, *more_workers] if "succeeded" in w.log_text()]
    assert len(busy) >= 2, "the batches did not spread over several workers"

    counts = json.loads(
        subprocess.run(
            [sluice_executable(), "stats", ws, "--json"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "SLUICE_DATABASE_URL": stack.database_url},
        ).stdout
    )
    assert counts == {
        "workspace_id": ws,
        "events": 320,
        "accepted": 2,
        "flagged_bot": 0,
        "discarded": {"duplicate_order": 159, "throttled": 159},
        "rejected": {},
    }


# --- a worker killed in the middle of a batch -------------------------------------------


@contextmanager
def database_write_lock(database_url: str) -> Iterator[None]:
    """Hold the tables the worker writes, so it blocks mid-batch: after its Redis claims,
    before its commit."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        lite = sqlite3.connect(str(url.database), isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()
        return
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(False)) as conn:
        conn.execute("LOCK TABLE order_claims, contacts, events IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def crash_env(stack: Stack) -> dict[str, str]:
    """Its own Redis database, and timeouts short enough to watch a recovery."""
    url = with_redis_db(stack.redis_url, redis_db_of(stack.redis_url) + CRASH_DB_OFFSET)
    redis.Redis.from_url(url).flushdb()
    return sluice_env(
        url, stack.database_url, SLUICE_VISIBILITY_TIMEOUT_S="12", SLUICE_TASK_TIME_LIMIT_S="5"
    )


def test_a_worker_killed_mid_batch_recovers_with_the_same_verdicts(
    stack: Stack, crash_env: dict[str, str], tmp_path: Path
) -> None:
    ws = stack.new_workspace().workspace_id
    at = EVENT_TIME
    batch = [
        Event(
            workspace_id=ws,
            kind="confirmation",
            name="confirmation",
            user_id="ann",
            properties={"orderId": "k1"},
        ),
        Event(
            workspace_id=ws,
            kind="confirmation",
            name="confirmation",
            user_id="ann",
            properties={"orderId": "k1"},
        ),
        Event(workspace_id=ws, kind="email_open", name="email_open", user_id="ann", timestamp=at),
        Event(
            workspace_id=ws,
            kind="email_open",
            name="email_open",
            user_id="ann",
            timestamp=at + timedelta(minutes=5),
        ),
        Event(
            workspace_id=ws,
            kind="email_open",
            name="email_open",
            user_id="ann",
            timestamp=at + timedelta(minutes=25),
        ),
        Event(workspace_id=ws, kind="login", name="login", user_id="ann", traits={"plan": "free"}),
        Event(workspace_id=ws, kind="update", name="update", user_id="ann", traits={"plan": "pro"}),
        Event(workspace_id=ws, kind="custom", name="Viewed", user_id="ann"),
    ]
    expected = [
        ("accepted", None),
        ("discarded", "duplicate_order"),
        ("accepted", None),
        ("discarded", "throttled"),
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
    ]
    envelope = Envelope(events=batch)
    redis_url = crash_env["SLUICE_REDIS_URL"]
    claims = redis.Redis.from_url(redis_url)
    worker = SluiceProcess(WORKER_COMMAND, crash_env, tmp_path / "worker.log").start()
    replacement: SluiceProcess | None = None
    try:
        worker.wait_for_log(" ready.")
        assert worker.process is not None
        with database_write_lock(stack.database_url):
            transport = BrokerTransport(redis_url)
            transport.publish(envelope)
            transport.close()
            wait_for(lambda: bool(claims.exists(keys.order_claim(ws, "k1"))), "the Redis claims")
            assert stack.outcomes_of(ws) == {}  # claimed, blocked before its commit

            # 1. The pool process dies: the batch is rejected back to the queue at once.
            for child in children_of(worker.process.pid):
                os.kill(child, signal.SIGKILL)
            wait_for(
                lambda: claims.get(keys.deliveries(envelope.batch_id, 0)) == b"2",
                "the batch to come back after its pool process died",
            )

            # 2. The whole worker dies: the batch comes back after the visibility timeout,
            #    to another worker.
            os.kill(worker.process.pid, signal.SIGKILL)
            for child in children_of(worker.process.pid):
                os.kill(child, signal.SIGKILL)
            worker.process.wait()
            replacement = SluiceProcess(WORKER_COMMAND, crash_env, tmp_path / "again.log")
            replacement.start().wait_for_log(" ready.")
            wait_for(
                lambda: claims.get(keys.deliveries(envelope.batch_id, 0)) == b"3",
                "the batch to come back after its worker died",
                timeout_s=90,
            )
        ids = [event.message_id for event in batch]
        verdicts = stack.wait_for_outcomes(ws, ids)
    finally:
        worker.stop()
        if replacement is not None:
            replacement.stop()
    assert [verdicts[m] for m in ids] == expected
    assert stack.event_rows_per_message(ws) == {
        m: 1 for m, verdict in zip(ids, expected, strict=True) if verdict[0] == "accepted"
    }
    with stack.engine.connect() as conn:
        decided = conn.execute(
            select(func.count()).select_from(outcomes).where(outcomes.c.workspace_id == ws)
        ).scalar_one()
    assert decided == len(batch)


def test_an_update_waits_out_the_grace_period_for_its_user(
    stack: Stack, crash_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**crash_env, "SLUICE_UNKNOWN_USER_GRACE_S": "3"}
    ws = stack.new_workspace(env["SLUICE_REDIS_URL"]).workspace_id
    worker = SluiceProcess(WORKER_COMMAND, env, tmp_path / "worker.log").start()
    try:
        worker.wait_for_log(" ready.")
        with EventClient(ws, broker_url=env["SLUICE_REDIS_URL"]) as client:
            early = client.send({"kind": "update", "user_id": "late", "traits": {"plan": "pro"}})
            never = client.send({"kind": "update", "user_id": "nobody", "traits": {"x": 1}})
            time.sleep(1)  # the user is created while its update waits
            login = client.send({"kind": "login", "user_id": "late", "traits": {"plan": "free"}})
        assert stack.wait_for_outcomes(ws, [early, never, login]) == {
            early: ("accepted", None),
            never: ("rejected", "unknown_user"),
            login: ("accepted", None),
        }
    finally:
        worker.stop()
    with stack.engine.connect() as conn:
        contact = conn.execute(select(contacts).where(contacts.c.workspace_id == ws)).one()
    # The update was applied last, but it happened first (event time): the login's newer
    # value stands. Last writer wins by event time, not by processing order.
    assert contact.attributes == {"plan": "free"}
    assert contact.attribute_times["plan"][1] == login
