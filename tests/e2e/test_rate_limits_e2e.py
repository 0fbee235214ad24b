"""A workspace's rate limit through two gateway processes sharing Redis: a burst over it
gets 429 with ``Retry-After`` on every route, in each route's shape, and no more events
than the limit allows are queued; another workspace sending meanwhile gets only 200s; and
``sluice workspace configure … rate_limit_per_s=0`` lifts it within the cache's time."""

from __future__ import annotations

import asyncio
import base64
import itertools
import math
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.cli.embedded_redis import free_port
from sluice.store.definitions import add_definition
from sluice.store.workspaces import NewWorkspace
from tests.conftest import Stack, sluice_env
from tests.processes import GATEWAY_COMMAND, SluiceProcess, sluice_executable, with_option

LIMIT_PER_S = 20
CACHE_TTL_S = 2  # SLUICE_KEY_CACHE_TTL_S: how soon a configure reaches the gateways
BURST_S = 3.0
BATCH_EVENTS = 10
SENDERS = 10  # concurrent senders of the limited workspace


@dataclass
class Sent:
    route: str
    gateway: int
    status: int
    events: int
    retry_after: str | None
    body: dict[str, Any]


@dataclass
class Burst:
    limited: list[Sent] = field(default_factory=list)
    other: list[Sent] = field(default_factory=list)
    elapsed_s: float = 0.0


def configure(stack: Stack, workspace_id: str, per_s: int) -> None:
    subprocess.run(
        [sluice_executable(), "workspace", "configure", workspace_id, f"rate_limit_per_s={per_s}"],
        env={**os.environ, **sluice_env(stack.redis_url, stack.database_url)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def two_gateways(stack: Stack, tmp_path: Path) -> Iterator[list[str]]:
    env = sluice_env(stack.redis_url, stack.database_url, SLUICE_KEY_CACHE_TTL_S=str(CACHE_TTL_S))
    started, bases = [], []
    try:
        for index in range(2):
            port = free_port()
            command = with_option(
                with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port)
            )
            process = SluiceProcess(command, env, tmp_path / f"gateway-{index}.log").start()
            started.append(process)
            bases.append(f"http://127.0.0.1:{port}")
            process.wait_for_http(f"{bases[-1]}/healthz")
        yield bases
    finally:
        for process in started:
            process.stop()


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def requests_for(workspace: NewWorkspace, bunce_id: str) -> dict[str, dict[str, Any]]:
    """One request of each route, and the events it carries."""
    ws, key = workspace.workspace_id, workspace.write_key
    return {
        "native": {
            "url": "/v1/track",
            "headers": {"Authorization": basic_auth(key)},
            "json": {"userId": "u", "event": "Burst"},
            "events": 1,
        },
        "native-batch": {
            "url": "/v1/batch",
            "headers": {"Authorization": basic_auth(key)},
            "json": {"batch": [{"type": "track", "userId": "u", "event": "B"}] * BATCH_EVENTS},
            "events": BATCH_EVENTS,
        },
        "bunce": {
            "url": "/compat/bunce/v1/events/trigger",
            "headers": {"X-Authorization": key},
            "json": {"event_id": bunce_id, "payload": {"email": "a@x.io"}},
            "events": 1,
        },
        "clevertap": {
            "url": "/compat/clevertap/1/targets/trigger.json",
            "headers": {"X-CleverTap-Account-Id": ws, "X-CleverTap-Passcode": key},
            "json": {
                "business_event": "Released",
                "name": "n",
                "c-by": "me",
                "when": "now",
                "properties": {},
            },
            "events": 1,
        },
    }


async def send(http: httpx.AsyncClient, route: str, gateway: int, spec: dict[str, Any]) -> Sent:
    answer = await http.post(spec["url"], headers=spec["headers"], json=spec["json"])
    retry_after = answer.headers.get("retry-after")
    return Sent(route, gateway, answer.status_code, spec["events"], retry_after, answer.json())


async def burst(
    bases: list[str], limited: dict[str, dict[str, Any]], other: dict[str, Any]
) -> Burst:
    """For ``BURST_S``: ``SENDERS`` senders cycle the limited workspace's routes over both
    gateways, one sender sends the other workspace's tracks, over both too."""
    result = Burst()
    clients = [httpx.AsyncClient(base_url=base, timeout=10) for base in bases]
    deadline = time.monotonic() + BURST_S
    routes = itertools.cycle(itertools.product(sorted(limited), range(len(clients))))

    async def limited_sender() -> None:
        while time.monotonic() < deadline:
            route, gateway = next(routes)
            result.limited.append(await send(clients[gateway], route, gateway, limited[route]))

    async def other_sender() -> None:
        for gateway in itertools.cycle(range(len(clients))):
            if time.monotonic() >= deadline:
                return
            result.other.append(await send(clients[gateway], "native", gateway, other))

    started = time.monotonic()
    try:
        await asyncio.gather(*(limited_sender() for _ in range(SENDERS)), other_sender())
    finally:
        result.elapsed_s = time.monotonic() - started
        for client in clients:
            await client.aclose()
    return result


def test_a_burst_over_the_limit_through_two_gateways(stack: Stack, two_gateways: list[str]) -> None:
    limited, other = stack.new_workspace(), stack.new_workspace()
    bunce_id = add_definition(stack.engine, limited.workspace_id, "bunce", "Bought").definition_id
    add_definition(stack.engine, limited.workspace_id, "clevertap", "Released")
    configure(stack, limited.workspace_id, LIMIT_PER_S)  # before the gateways ever see it

    limited_requests = requests_for(limited, bunce_id)
    result = asyncio.run(burst(two_gateways, limited_requests, requests_for(other, "")["native"]))

    assert result.other and {s.status for s in result.other} == {200}
    assert {s.status for s in result.limited} == {200, 429}
    refused = [s for s in result.limited if s.status == 429]
    assert {s.route for s in refused} == set(limited_requests)
    assert {s.gateway for s in refused} == {0, 1}
    assert {s.retry_after for s in refused} == {"1"}  # one window (SLUICE_RATE_LIMIT_WINDOW_S)
    for sent in refused:
        if sent.route.startswith("native"):
            assert sent.body["success"] is False and sent.body["error"] == "rate_limited"
        elif sent.route == "bunce":
            assert sent.body["success"] is False
            assert sent.body["error"] == {"code": 429, "message": sent.body["message"]}
        else:
            assert sent.body == {"status": "fail", "error": sent.body["error"], "code": 429}

    # Every fixed window of the counter holds at most the limit: a burst of T seconds spans
    # at most ceil(T) + 1 windows. Two processes counting apart would take twice as much.
    accepted = [s for s in result.limited if s.status == 200]
    accepted_events = sum(s.events for s in accepted)
    allowed = LIMIT_PER_S * (math.ceil(result.elapsed_s) + 1)
    offered = sum(s.events for s in result.limited)
    assert LIMIT_PER_S <= accepted_events <= allowed, (accepted_events, result.elapsed_s)
    assert offered > 2 * allowed  # the burst was well over the limit
    # What was accepted is queued and decided; nothing refused was queued.
    message_ids = [
        message_id
        for sent in accepted
        for message_id in sent.body.get("message_ids", [sent.body.get("message_id")])
    ]
    assert len(message_ids) == accepted_events
    stack.wait_for_outcomes(limited.workspace_id, message_ids)
    stack.wait_until_idle()
    assert len(stack.outcomes_of(limited.workspace_id)) == accepted_events

    # Lifted: within the cache's time both gateways take the whole burst again. The probe,
    # a batch larger than a window holds, gets 413 as long as a gateway keeps the limit.
    configure(stack, limited.workspace_id, 0)
    lifted_at = time.monotonic()
    native = limited_requests["native"]
    probe = {"batch": [{"type": "track", "userId": "u", "event": "P"}] * (2 * LIMIT_PER_S)}
    with httpx.Client(headers=native["headers"], timeout=10) as http:
        for base in two_gateways:
            while (answer := http.post(base + "/v1/batch", json=probe)).status_code != 200:
                assert answer.status_code in (413, 429), answer.text
                assert time.monotonic() - lifted_at < 30, "the limit was not lifted within 30 s"
                time.sleep(0.1)
        assert time.monotonic() - lifted_at < CACHE_TTL_S + 10  # the cache's time, not 30 s
        statuses = [
            http.post(two_gateways[i % 2] + native["url"], json=native["json"]).status_code
            for i in range(4 * LIMIT_PER_S)
        ]
    assert set(statuses) == {200}
