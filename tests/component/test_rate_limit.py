"""Per-workspace rate limits (sluice.gateway.rate_limit) against a real Redis: the budget
is shared by every limiter on the same Redis, counts events, refuses a request whole, and
each route answers past it in its own error shape."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine

from sluice.cli.embedded_redis import free_port
from sluice.gateway import create_app
from sluice.gateway.errors import ApiError
from sluice.gateway.rate_limit import RateLimiterUnavailable, WorkspaceRateLimiter
from sluice.producer import keys
from sluice.settings import Settings
from sluice.store.definitions import add_definition
from sluice.store.workspaces import (
    NewWorkspace,
    configure_workspace,
    create_workspace,
    rate_limit_per_s,
)
from sluice.worker.ingest.store import _policy


def limiter(redis_url: str, window_s: int = 60) -> WorkspaceRateLimiter:
    # A long window: nothing frees up while a test runs, so counts are exact.
    return WorkspaceRateLimiter(redis_url, window_s=window_s, timeout_s=2.0)


async def taken(limiters: list[WorkspaceRateLimiter], workspace_id: str, costs: list[int]) -> int:
    """Events accepted out of ``costs`` (one request each, round-robin over the limiters)."""
    accepted = 0
    for index, cost in enumerate(costs):
        try:
            await limiters[index % len(limiters)].take(workspace_id, 1, cost)
            accepted += cost
        except ApiError as exc:
            assert exc.status_code == 429
            assert exc.code == "rate_limited"
            assert exc.headers["Retry-After"] == "60"
    return accepted


def test_two_limiters_share_one_budget_of_events(isolated_redis_url: str) -> None:
    async def run() -> tuple[int, int]:
        limiters = [limiter(isolated_redis_url), limiter(isolated_redis_url)]
        try:
            # 1 event/s over 60 s: 60 events. 7 requests of 10 events: 6 fit, the 7th is
            # refused whole (not cut to what is left).
            first = await taken(limiters, "ws-a", [10] * 7)
            # What is left (0) cannot take even one event; another workspace is untouched.
            other = await taken(limiters, "ws-b", [30, 30, 1])
            return first, other
        finally:
            for each in limiters:
                await each.close()

    assert asyncio.run(run()) == (60, 60)
    client = redis.Redis.from_url(isolated_redis_url)
    current, _previous = keys.rate_limit_windows("ws-a", 60, 60)
    assert int(client.get(current) or 0) == 60  # the documented key holds the count
    assert 0 < client.pttl(current) <= 120_000  # and expires (two windows)


def test_a_request_no_window_can_hold_is_too_large(isolated_redis_url: str) -> None:
    async def run() -> ApiError:
        each = limiter(isolated_redis_url, window_s=2)
        try:
            with pytest.raises(ApiError) as refused:
                await each.take("ws", 20, 41)  # 20/s over 2 s holds 40
            await each.take("ws", 20, 40)
            return refused.value
        finally:
            await each.close()

    refused = asyncio.run(run())
    assert refused.status_code == 413
    assert "at most 40 every 2 s" in refused.message


def test_redis_down_is_an_unavailable_limiter(isolated_redis_url: str) -> None:
    async def run() -> None:
        each = limiter(f"redis://127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(RateLimiterUnavailable):
                await each.take("ws", 10, 1)
        finally:
            await each.close()

    asyncio.run(run())


def test_configure_checks_the_limit_and_workers_ignore_it(engine: Engine) -> None:
    workspace = create_workspace(engine, "limits")
    assert rate_limit_per_s(engine, workspace.workspace_id) == 0
    merged = configure_workspace(engine, workspace.workspace_id, {"rate_limit_per_s": "25"})
    assert merged["rate_limit_per_s"] == 25
    assert rate_limit_per_s(engine, workspace.workspace_id) == 25
    assert rate_limit_per_s(engine, str(uuid.uuid4())) == 0  # unknown workspace: no limit
    for bad in ("-1", "fast", "1.5"):
        with pytest.raises(ValidationError):
            configure_workspace(engine, workspace.workspace_id, {"rate_limit_per_s": bad})
    # The workers' rule policy takes only its own keys from the same settings.
    default = Settings().rule_policy()
    assert _policy(default, {**merged, "bot_mode": "flag"}) == replace(default, bot_mode="flag")


@pytest.fixture
def limited(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> Iterator[tuple[TestClient, NewWorkspace, NewWorkspace]]:
    """A gateway in process (limit cache off: a configure applies at once), a workspace
    limited to 3 events/s over 60 s windows, and one without a limit."""
    limited_ws = create_workspace(engine, "limited")
    free_ws = create_workspace(engine, "free")
    configure_workspace(engine, limited_ws.workspace_id, {"rate_limit_per_s": "3"})
    settings = Settings(
        redis_url=isolated_redis_url,
        database_url=database_url,
        key_cache_ttl_s=0,
        rate_limit_window_s=60,
    )
    with TestClient(create_app(settings)) as client:
        yield client, limited_ws, free_ws


def track(client: TestClient, workspace: NewWorkspace, i: int) -> int:
    answer = client.post(
        "/v1/track", auth=(workspace.write_key, ""), json={"userId": f"u{i}", "event": "E"}
    )
    return answer.status_code


def test_each_route_answers_429_in_its_own_shape(
    limited: tuple[TestClient, NewWorkspace, NewWorkspace], engine: Engine
) -> None:
    client, ws, free = limited
    bunce_id = add_definition(engine, ws.workspace_id, "bunce", "Bought").definition_id
    add_definition(engine, ws.workspace_id, "clevertap", "Released")
    # 180 events in a 60 s window: a batch of 100 and one of 80 fit, then nothing.
    for size in (100, 80):
        batch = [{"type": "track", "userId": "u", "event": "E"}] * size
        answer = client.post("/v1/batch", auth=(ws.write_key, ""), json={"batch": batch})
        assert answer.status_code == 200, answer.text

    native = client.post("/v1/track", auth=(ws.write_key, ""), json={"userId": "u", "event": "E"})
    assert native.status_code == 429
    assert native.headers["Retry-After"] == "60"
    assert native.json() == {
        "success": False,
        "error": "rate_limited",
        "message": native.json()["message"],
    }
    assert "limit of 3 events per second" in native.json()["message"]

    read = client.get("/v1/events/whatever", auth=(ws.write_key, ""))
    assert (read.status_code, read.json()["error"]) == (429, "rate_limited")

    bunce = client.post(
        "/compat/bunce/v1/events/trigger",
        headers={"X-Authorization": ws.write_key},
        json={"event_id": bunce_id, "payload": {"email": "a@x.io"}},
    )
    assert bunce.status_code == 429
    assert bunce.headers["Retry-After"] == "60"
    body = bunce.json()
    assert body["success"] is False
    assert body["error"] == {"code": 429, "message": body["message"]}

    clevertap = client.post(
        "/compat/clevertap/1/targets/trigger.json",
        headers={"X-CleverTap-Account-Id": ws.workspace_id, "X-CleverTap-Passcode": ws.write_key},
        json={
            "business_event": "Released",
            "name": "n",
            "c-by": "me",
            "when": "now",
            "properties": {},
        },
    )
    assert clevertap.status_code == 429
    assert clevertap.headers["Retry-After"] == "60"
    assert clevertap.json() == {"status": "fail", "error": clevertap.json()["error"], "code": 429}

    bento = client.post(
        f"/compat/bento/api/v1/batch/events?site_uuid={ws.workspace_id}",
        auth=(ws.write_key, ""),
        json={"events": [{"type": "signup", "email": "b@x.io"}]},
    )
    assert (bento.status_code, list(bento.json())) == (429, ["error"])

    # Another workspace is untouched, and costs no round trip: no budget keys of its own.
    assert all(track(client, free, i) == 200 for i in range(20))
    found = redis.Redis.from_url(client.app.state.gateway.settings.redis_url).keys(  # type: ignore[attr-defined]
        f"{keys.RATE_LIMIT_PREFIX}:*"
    )
    assert found and all(ws.workspace_id.encode() in key for key in found)


def test_a_batch_larger_than_the_window_is_413_and_configure_0_lifts_the_limit(
    limited: tuple[TestClient, NewWorkspace, NewWorkspace], engine: Engine
) -> None:
    client, ws, _free = limited
    batch = [{"type": "track", "userId": "u", "event": "E"}] * 181
    answer = client.post("/v1/batch", auth=(ws.write_key, ""), json={"batch": batch})
    assert answer.status_code == 413
    assert "send smaller batches" in answer.json()["message"]
    statuses = [track(client, ws, i) for i in range(185)]
    assert statuses.count(200) == 180 and set(statuses[180:]) == {429}
    configure_workspace(engine, ws.workspace_id, {"rate_limit_per_s": "0"})
    assert all(track(client, ws, i) == 200 for i in range(10))


def test_redis_down_for_the_limiter_is_503_when_publishing_and_no_error_for_reads(
    limited: tuple[TestClient, NewWorkspace, NewWorkspace],
) -> None:
    client, ws, _free = limited
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    working = gateway.limiter
    dead = WorkspaceRateLimiter(f"redis://127.0.0.1:{free_port()}/0", window_s=1, timeout_s=1)
    gateway.limiter = dead
    try:
        answer = client.post(
            "/v1/track", auth=(ws.write_key, ""), json={"userId": "u", "event": "E"}
        )
        assert answer.status_code == 503
        assert answer.json()["error"] == "queue_unavailable"
        assert answer.headers["Retry-After"]
        read = client.get("/v1/events/unknown", auth=(ws.write_key, ""))
        assert read.status_code == 404  # answered, uncounted
    finally:
        gateway.limiter = working
        client.portal.call(dead.close)  # type: ignore[union-attr]
