"""The gateway's limits against one tenant hogging it, in process over a real Redis
database that no worker reads: keys longer than any key, batches counted before they are
validated, and ``Prefer: wait`` holders bounded per workspace."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from sluice.gateway import create_app, native
from sluice.gateway.segment import to_event
from sluice.producer.wire import INGEST_QUEUE
from sluice.settings import Settings
from sluice.store.definitions import add_definition
from sluice.store.workspaces import (
    MAX_WRITE_KEY_CHARS,
    KeyGrant,
    NewWorkspace,
    configure_workspace,
    create_workspace,
)
from tests.routes import routes


@pytest.fixture
def client(isolated_redis_url: str, database_url: str) -> Iterator[TestClient]:
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("length", [MAX_WRITE_KEY_CHARS + 1, 8 * 1024])
def test_a_key_longer_than_any_key_gets_each_routes_unknown_key_answer_without_a_lookup(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    workspace = create_workspace(engine, "long-keys")
    ws = workspace.workspace_id
    bunce = add_definition(engine, ws, "bunce", "Purchase", params={"plan": "string"})
    add_definition(engine, ws, "clevertap", "Program Released", required=["program_id"])
    every = routes(ws, bunce.definition_id, "some-message")
    unknown = f"sk_live_{uuid.uuid4().hex}"
    expected = {name: route(client, unknown) for name, route in every.items()}
    keys = client.app.state.gateway.keys  # type: ignore[attr-defined]
    lookup = keys._lookup
    looked_up: list[int] = []

    def spy(write_key: str) -> KeyGrant | None:
        looked_up.append(len(write_key))
        return lookup(write_key)  # type: ignore[no-any-return]

    monkeypatch.setattr(keys, "_lookup", spy)
    too_long = "sk_live_" + "x" * (length - len("sk_live_"))
    for name, route in every.items():
        answer = route(client, too_long)
        assert answer.status_code == 401, (name, answer.text)
        assert (answer.json(), answer.headers.get("www-authenticate")) == (
            expected[name].json(),
            expected[name].headers.get("www-authenticate"),
        ), name
    assert looked_up == []
    assert every["native track"](client, workspace.write_key).status_code == 200


def track_calls(count: int, *, invalid: int = 0) -> list[dict[str, object]]:
    """``count`` track calls, the first ``invalid`` of them without an event name."""
    return [
        {"type": "track", "userId": f"u{i}", **({} if i < invalid else {"event": "E"})}
        for i in range(count)
    ]


class ValidationSpy:
    """Counts the calls the native batch route validates (``to_event``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = to_event

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(native, "to_event", counted)


def test_a_batch_past_the_cap_or_on_a_full_queue_is_refused_before_any_call_is_validated(
    isolated_redis_url: str, database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = create_workspace(engine, "batch-cap")
    spy = ValidationSpy(monkeypatch)
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url, max_queue_depth=1)
    with TestClient(create_app(settings)) as client:
        client.auth = (workspace.write_key, "")
        over = client.post("/v1/batch", json={"batch": track_calls(1001)})
        assert (over.status_code, over.json()["error"]) == (413, "too_large")
        assert spy.calls == 0
        assert client.post("/v1/batch", json={"batch": track_calls(10)}).status_code == 200
        assert spy.calls == 10
        time.sleep(settings.queue_depth_sample_s + 0.05)  # the depth is sampled again
        full = client.post("/v1/batch", json={"batch": track_calls(500)})
        assert (full.status_code, full.json()["error"]) == (429, "queue_full")
        assert spy.calls == 10
    assert redis.Redis.from_url(isolated_redis_url).llen(INGEST_QUEUE) == 1


def test_the_rate_limit_counts_every_call_of_a_batch_the_invalid_ones_too(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> None:
    workspace = create_workspace(engine, "batch-limit")
    ws = workspace.workspace_id
    configure_workspace(engine, ws, {"rate_limit_per_s": "3"})  # 180 in a 60 s window
    settings = Settings(
        redis_url=isolated_redis_url,
        database_url=database_url,
        key_cache_ttl_s=0,
        rate_limit_window_s=60,
    )
    bento = f"/compat/bento/api/v1/batch/events?site_uuid={ws}"
    with TestClient(create_app(settings)) as client:
        client.auth = (workspace.write_key, "")
        mostly_invalid = client.post("/v1/batch", json={"batch": track_calls(100, invalid=90)})
        assert mostly_invalid.status_code == 200  # 10 queued, 100 counted
        assert len(mostly_invalid.json()["message_ids"]) == 10
        refused = client.post("/v1/batch", json={"batch": track_calls(90)})
        assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
        no_email = [{"type": "viewed"}] * 70
        partly = client.post(bento, json={"events": [*no_email, {"type": "v", "email": "a@x.io"}]})
        assert partly.status_code == 200  # 71 counted: 171 of 180
        assert partly.json()["results"] == 1
        over = client.post(bento, json={"events": [{"type": "v", "email": "b@x.io"}] * 10})
        assert over.status_code == 429
        assert list(over.json()) == ["error"]


def test_a_large_batch_is_validated_off_the_event_loop(
    isolated_redis_url: str, database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first call's validation waits until /livez has been answered. Off the event loop
    # it is let go at once; on the loop, /livez could not be answered before it gave up
    # waiting (5 s).
    workspace = create_workspace(engine, "off-loop")
    started, answered = threading.Event(), threading.Event()
    waited: list[bool] = []
    real = to_event

    def held(*args: Any, **kwargs: Any) -> Any:
        if not started.is_set():
            started.set()
            waited.append(answered.wait(timeout=5))
        return real(*args, **kwargs)

    monkeypatch.setattr(native, "to_event", held)
    app = create_app(Settings(redis_url=isolated_redis_url, database_url=database_url))

    async def scenario() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", auth=(workspace.write_key, "")
        ) as client:
            calls = track_calls(200)  # well past native.OFF_LOOP_CALLS
            batch = asyncio.ensure_future(client.post("/v1/batch", json={"batch": calls}))
            deadline = time.monotonic() + 10
            while not started.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            livez = await client.get("/livez")
            answered.set()
            return livez.status_code, (await batch).status_code

    try:
        statuses = asyncio.run(scenario())
    finally:
        app.state.gateway.close()
    assert statuses == (200, 200)
    assert waited == [True]  # /livez was answered while the batch was being validated


def test_prefer_wait_past_the_workspaces_bound_is_answered_at_once_as_without_it(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> None:
    # No worker decides anything here: each granted wait lasts its full N seconds.
    busy, other = create_workspace(engine, "waits-busy"), create_workspace(engine, "waits-other")
    settings = Settings(
        redis_url=isolated_redis_url, database_url=database_url, max_waits_per_workspace=2
    )
    app = create_app(settings)
    track = {"userId": "u", "event": "E"}

    async def scenario() -> dict[str, httpx.Response | bool]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:

            def waiting(workspace: NewWorkspace, wait_s: int) -> asyncio.Future[httpx.Response]:
                return asyncio.ensure_future(
                    client.post(
                        "/v1/track",
                        json=track,
                        auth=(workspace.write_key, ""),
                        headers={"Prefer": f"wait={wait_s}"},
                    )
                )

            holders = [waiting(busy, 3) for _ in range(2)]
            await asyncio.sleep(0.5)  # both queued their event and began to wait
            third = await waiting(busy, 3)  # past the bound: at once
            holders_still_waiting = not any(h.done() for h in holders)
            elsewhere = await waiting(other, 1)  # another workspace waits as asked
            first, second = await asyncio.gather(*holders)
            after = await waiting(busy, 1)  # the slots are free again
            return {
                "third": third,
                "held": holders_still_waiting,
                "elsewhere": elsewhere,
                "first": first,
                "second": second,
                "after": after,
            }

    try:
        answers = asyncio.run(scenario())
    finally:
        app.state.gateway.close()
    assert answers.pop("held") is True
    applied = {
        name: (
            answer.status_code,
            answer.json()["status"],
            answer.headers.get("preference-applied"),
        )
        for name, answer in answers.items()
        if isinstance(answer, httpx.Response)
    }
    assert applied == {
        "third": (200, "queued", None),
        "elsewhere": (200, "queued", "wait=1"),
        "first": (200, "queued", "wait=3"),
        "second": (200, "queued", "wait=3"),
        "after": (200, "queued", "wait=1"),
    }
