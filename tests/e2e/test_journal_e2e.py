"""A batch lost between Redis and a worker (docs/reliability.md #1) is published again by
the journal sweep of a real worker, and decided once."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from sqlalchemy import Engine

from sluice.producer import EventClient, keys
from sluice.producer.wire import INGEST_QUEUE
from sluice.store.workspaces import create_workspace
from tests.conftest import Stack, sluice_env
from tests.processes import MIGRATE_COMMAND, WORKER_COMMAND, SluiceProcess

# The grace must outlast a killed worker's redelivery, so the visibility timeout (and the
# time limit under it) shrink with it.
GRACE_S = "3"
SWEEP_S = "1"
VISIBILITY_TIMEOUT_S = "3"
TIME_LIMIT_S = "1"


def test_a_lost_batch_is_published_again_and_a_committed_one_forgotten(
    stack: Stack, isolated_redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    env = sluice_env(
        isolated_redis_url,
        database_url,
        SLUICE_JOURNAL_GRACE_S=GRACE_S,
        SLUICE_JOURNAL_SWEEP_S=SWEEP_S,
        SLUICE_VISIBILITY_TIMEOUT_S=VISIBILITY_TIMEOUT_S,
        SLUICE_TASK_TIME_LIMIT_S=TIME_LIMIT_S,
    )
    SluiceProcess(MIGRATE_COMMAND, env, tmp_path / "migrate.log").run_to_completion()
    workspace = create_workspace(engine, "journal")
    client = redis.Redis.from_url(isolated_redis_url)
    events = [{"kind": "custom", "name": "Page Viewed", "user_id": f"u{i}"} for i in range(5)]
    with EventClient(workspace.workspace_id, broker_url=isolated_redis_url) as sender:
        lost = sender.send_batch(events)
        assert client.delete(INGEST_QUEUE) == 1  # gone before any worker recorded it
        worker = SluiceProcess(WORKER_COMMAND, env, tmp_path / "worker.log").start()
        try:
            worker.wait_for_log(" ready.")
            kept = sender.send_batch(events)
            outcomes = stack.wait_for_outcomes(workspace.workspace_id, lost + kept, timeout_s=60)
            assert set(outcomes.values()) == {("accepted", None)}
            assert set(stack.event_rows_per_message(workspace.workspace_id).values()) == {1}
            deadline = time.monotonic() + 30
            while client.hlen(keys.journal()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.hlen(keys.journal()) == 0
            assert client.zcard(keys.journal_seen()) == 0
            assert "published 1 batches again" in worker.log_text()
        finally:
            worker.stop()
