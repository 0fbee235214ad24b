"""RabbitMQ as the broker (SLUICE_BROKER_URL=amqp://…): the same path, with Redis kept for
the rules and pending marks. Needs SLUICE_TEST_AMQP_URL (set by .ci/run)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sluice.producer import EventClient
from tests.conftest import CRASH_DB_OFFSET, Stack, sluice_env
from tests.processes import WORKER_COMMAND, SluiceProcess
from tests.services import redis_db_of, service_missing, with_redis_db


@pytest.fixture
def amqp_url() -> Iterator[str]:
    url = os.environ.get("SLUICE_TEST_AMQP_URL", "")
    if not url.startswith("amqp"):
        service_missing("RabbitMQ: SLUICE_TEST_AMQP_URL is not set")
    from kombu.connection import Connection

    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        service_missing(f"RabbitMQ at SLUICE_TEST_AMQP_URL does not answer: {exc}")
    yield url


def test_events_flow_through_a_rabbitmq_broker(stack: Stack, amqp_url: str, tmp_path: Path) -> None:
    rules_redis = with_redis_db(stack.redis_url, redis_db_of(stack.redis_url) + CRASH_DB_OFFSET)
    redis.Redis.from_url(rules_redis).flushdb()
    env = {**sluice_env(rules_redis, stack.database_url), "SLUICE_BROKER_URL": amqp_url}
    workspace = stack.new_workspace()
    # A name of its own: RabbitMQ's remote-control queue is exclusive per worker name.
    name = f"rabbit-{uuid.uuid4().hex[:8]}@%h"
    worker = SluiceProcess(
        [*WORKER_COMMAND, "--hostname", name], env, tmp_path / "worker.log"
    ).start()
    try:
        worker.wait_for_log(" ready.")
        with EventClient(
            workspace.workspace_id, broker_url=amqp_url, redis_url=rules_redis
        ) as client:
            ids = client.send_batch(
                [
                    {"kind": "confirmation", "user_id": "u", "properties": {"orderId": "r-1"}},
                    {"kind": "confirmation", "user_id": "u", "properties": {"orderId": "r-1"}},
                    {"kind": "custom", "name": "Viewed", "user_id": "u"},
                ]
            )
        verdicts = stack.wait_for_outcomes(workspace.workspace_id, ids)
    finally:
        worker.stop()
    assert [verdicts[m] for m in ids] == [
        ("accepted", None),
        ("discarded", "duplicate_order"),
        ("accepted", None),
    ]
