"""The known workspace ids (sluice.producer.workspace_ids) with a real worker: it writes the
database's ids to its Redis when it starts, and from then on EventClient refuses an id that
is not among them, while a workspace made before the worker started is taken."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from sluice.producer import EventClient, UnknownWorkspaceError, keys
from sluice.producer.wire import INGEST_QUEUE
from sluice.store.workspaces import create_workspace
from tests.conftest import Stack, sluice_env
from tests.processes import WORKER_COMMAND, SluiceProcess


def test_a_worker_writes_the_known_ids_at_start_and_the_client_checks_them(
    stack: Stack, isolated_redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    workspace = create_workspace(engine, "before-the-worker")  # in the database only
    client = redis.Redis.from_url(isolated_redis_url)
    assert not client.exists(keys.known_workspaces())
    unknown = f"ws-{uuid.uuid4().hex[:8]}"
    with EventClient(unknown, broker_url=isolated_redis_url) as sender:
        sender.send({"kind": "custom", "name": "Early"})  # no known ids yet: not checked
    client.delete(INGEST_QUEUE)
    env = sluice_env(isolated_redis_url, database_url)
    worker = SluiceProcess(WORKER_COMMAND, env, tmp_path / "worker.log").start()
    try:
        worker.wait_for_log(" ready.")
        assert client.sismember(keys.known_workspaces(), workspace.workspace_id)
        assert "known workspace ids written to Redis" in worker.log_text()
        with EventClient(workspace.workspace_id, broker_url=isolated_redis_url) as sender:
            message_id = sender.send({"kind": "custom", "name": "Signed Up", "user_id": "u1"})
        outcome = stack.wait_for_outcomes(workspace.workspace_id, [message_id], timeout_s=60)
        assert outcome[message_id] == ("accepted", None)
        with (
            EventClient(unknown, broker_url=isolated_redis_url) as sender,
            pytest.raises(UnknownWorkspaceError, match=unknown),
        ):
            sender.send({"kind": "custom", "name": "Late"})
        assert client.llen(INGEST_QUEUE) == 0
    finally:
        worker.stop()
