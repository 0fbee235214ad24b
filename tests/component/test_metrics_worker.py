"""What the ingest task adds to the cluster-wide metrics (real Redis and database; the
Celery task object is replaced by its request data, which is all the handler reads)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import Engine

from sluice.ops.metrics.families import DEAD_LETTERS, EVENTS
from sluice.producer import keys
from sluice.producer.envelope import Envelope
from sluice.producer.events import Event
from sluice.settings import Settings
from sluice.store.workspaces import create_workspace
from sluice.worker import tasks
from sluice.worker.runtime import Runtime
from sluice.worker.tasks import handle_batch
from tests.component.test_ingest_task import FakeTask, Request


@pytest.fixture
def runtime(isolated_redis_url: str, database_url: str) -> Iterator[Runtime]:
    runtime = Runtime(Settings(redis_url=isolated_redis_url, database_url=database_url))
    yield runtime
    runtime.store.engine.dispose()
    runtime.redis.close()


def counted(runtime: Runtime, family: str) -> dict[tuple[str, ...], int]:
    stored = runtime.redis.hgetall(keys.metric(family))
    return {tuple(orjson.loads(field)): int(value) for field, value in stored.items()}


def test_a_redelivered_batch_counts_none_of_its_events_again(
    runtime: Runtime, engine: Engine
) -> None:
    """Valid events replay their verdicts; so do the rejections of invalid ones (which the
    rules never see): a redelivery after a lost acknowledgement counts nothing twice."""
    workspace = create_workspace(engine, "metrics-redelivery").workspace_id
    wire = Envelope(
        events=[Event(workspace_id=workspace, kind="custom", name="E", user_id="u")]
    ).model_dump(mode="json")
    wire["events"].append({"workspace_id": workspace, "message_id": "bad-1", "kind": "teleport"})
    for retries in range(2):  # a first delivery, then the same message once more
        handle_batch(FakeTask(Request(id=wire["batch_id"], retries=retries)), runtime, wire)  # type: ignore[arg-type]
    assert counted(runtime, EVENTS.name) == {
        ("accepted", "", "client"): 1,
        ("rejected", "invalid", "unknown"): 1,
    }


def test_lone_dead_letters_are_counted_in_the_batch_pipeline(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invalid events without ids are dead letters, counted with the batch's other metrics,
    not with a Redis round trip each."""
    workspace = create_workspace(engine, "metrics-lone").workspace_id
    wire = Envelope(
        events=[Event(workspace_id=workspace, kind="custom", name="E", user_id="u")]
    ).model_dump(mode="json")
    wire["events"] += [{"workspace_id": workspace, "kind": "custom"} for _ in range(3)]
    flushes: list[object] = []
    monkeypatch.setattr(tasks, "flush", lambda *args: flushes.append(args))
    handle_batch(FakeTask(Request(id=wire["batch_id"])), runtime, wire)  # type: ignore[arg-type]
    assert flushes == []
    assert counted(runtime, DEAD_LETTERS.name) == {(): 3}
