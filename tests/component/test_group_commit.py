"""Group commit: concurrent requests share queue writes, each still all or nothing."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence

import httpx
import orjson
import pytest
import redis
from sqlalchemy import Engine

from sluice.gateway.group_commit import GroupCommitter
from sluice.producer.events import Event
from sluice.producer.wire import INGEST_QUEUE
from sluice.settings import Settings
from sluice.store.workspaces import create_workspace


def events(n: int, tag: str) -> list[Event]:
    return [
        Event(workspace_id="ws", kind="custom", name=tag, message_id=f"{tag}-{i}") for i in range(n)
    ]


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, batch: Sequence[Event]) -> list[str]:
        if self.fail:
            raise RuntimeError("queue down")
        self.calls.append([e.message_id for e in batch])
        return [e.message_id for e in batch]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_concurrent_requests_share_one_write_and_get_their_own_ids() -> None:
    recorder = Recorder()

    async def scenario() -> list[list[str]]:
        committer = GroupCommitter(recorder, window_s=0.05)
        return list(
            await asyncio.gather(*(committer.submit(events(2, f"r{i}")) for i in range(30)))
        )

    answers = run(scenario())
    assert answers == [[f"r{i}-0", f"r{i}-1"] for i in range(30)]
    assert len(recorder.calls) == 1 and len(recorder.calls[0]) == 60


def test_a_full_group_is_written_at_once_and_requests_are_never_split() -> None:
    recorder = Recorder()

    async def scenario() -> None:
        committer = GroupCommitter(recorder, window_s=60, max_events=4)
        requests = asyncio.gather(*(committer.submit(events(2, f"r{i}")) for i in range(4)))
        await asyncio.wait_for(requests, timeout=5)  # full groups do not wait for the window

    run(scenario())
    assert [len(call) for call in recorder.calls] == [4, 4]
    for call in recorder.calls:  # both events of each request in the same write
        assert all(f"{m.rsplit('-', 1)[0]}-0" in call for m in call)


def test_a_failed_write_fails_every_request_of_its_group() -> None:
    async def scenario() -> list[object]:
        committer = GroupCommitter(Recorder(fail=True), window_s=0.01)
        return list(
            await asyncio.gather(
                *(committer.submit(events(1, f"r{i}")) for i in range(3)), return_exceptions=True
            )
        )

    outcomes = run(scenario())
    assert isinstance(outcomes, list)
    assert [str(o) for o in outcomes] == ["queue down"] * 3


def test_the_gateway_groups_concurrent_requests_and_each_id_is_durable(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> None:
    from sluice.gateway import create_app

    workspace = create_workspace(engine, "group-commit")
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url, group_commit_ms=20)
    app = create_app(settings)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", auth=(workspace.write_key, "")
        ) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post("/v1/track", json={"userId": f"u{i}", "event": "E"})
                        for i in range(40)
                    )
                )
            )

    try:
        answers = asyncio.run(scenario())
    finally:
        app.state.gateway.close()
    assert [a.status_code for a in answers] == [200] * 40
    ids = [a.json()["message_id"] for a in answers]
    queue = redis.Redis.from_url(isolated_redis_url)
    envelopes = [
        orjson.loads(base64.b64decode(orjson.loads(raw)["body"]))[0][0]
        for raw in queue.lrange(INGEST_QUEUE, 0, -1)
    ]
    queued = sorted(e["message_id"] for envelope in envelopes for e in envelope["events"])
    assert queued == sorted(ids)
    assert len(envelopes) < 40  # shared writes


def test_drain_writes_what_waits_and_a_request_over_the_limit_is_refused() -> None:
    recorder = Recorder()

    async def scenario() -> list[str]:
        committer = GroupCommitter(recorder, window_s=60)
        waiting = asyncio.ensure_future(committer.submit(events(2, "late")))
        await asyncio.sleep(0)
        await committer.drain()  # shutdown: no 60 s wait, nothing lost
        with pytest.raises(ValueError):
            await committer.submit(events(1001, "huge"))
        return await waiting

    assert run(scenario()) == ["late-0", "late-1"]
    assert recorder.calls == [["late-0", "late-1"]]
