"""Key rotation against a real gateway process (its key cache at the default 30 s TTL):
``sluice workspace rotate-key`` gives a key that works at once on every route; the old key
works through its grace period and then gets 401 on every route, in that route's own error
shape, within a moment of its end (not a cache TTL later)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from sluice.producer.events import utc_now
from sluice.store.definitions import add_definition
from tests.conftest import Stack
from tests.processes import sluice_executable
from tests.routes import Route, routes

# How soon after ``rotate-key --grace-s 0`` returns its notice has reached the gateway:
# a moment (a Redis publish), with room for a busy machine; the key cache's TTL is 30 s.
NOTICE_S = 5.0


def prepared(stack: Stack, http: httpx.Client) -> tuple[str, str, dict[str, Route]]:
    """A workspace with the definitions its vendor routes need: (id, write key, routes)."""
    workspace = stack.new_workspace()
    ws, key = workspace.workspace_id, workspace.write_key
    bunce = add_definition(
        stack.engine, ws, "bunce", "Purchase", params={"plan": "string"}
    ).definition_id
    add_definition(stack.engine, ws, "clevertap", "Program Released", required=["program_id"])
    sent = http.post("/v1/track", auth=(key, ""), json={"userId": "u0", "event": "Signed Up"})
    assert sent.status_code == 200, sent.text
    return ws, key, routes(ws, bunce, sent.json()["message_id"])


def statuses(http: httpx.Client, every: dict[str, Route], key: str) -> dict[str, int]:
    return {name: route(http, key).status_code for name, route in every.items()}


def all_ok(every: dict[str, Route]) -> dict[str, int]:
    return dict.fromkeys(every, 200)


def refused_as_unknown(http: httpx.Client, every: dict[str, Route], key: str) -> None:
    """``key`` gets 401 on every route, with the very answer a key that never existed gets
    there: the route's own error shape, from the one unauthorized path."""
    unknown = f"sk_live_{uuid.uuid4().hex}"
    for name, route in every.items():
        answer, expected = route(http, key), route(http, unknown)
        assert answer.status_code == 401, (name, answer.status_code, answer.text)
        assert (answer.json(), answer.headers.get("www-authenticate")) == (
            expected.json(),
            expected.headers.get("www-authenticate"),
        ), name


def rotate(stack: Stack, workspace_id: str, *options: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "SLUICE_DATABASE_URL": stack.database_url,
        "SLUICE_REDIS_URL": stack.redis_url,
    }
    result = subprocess.run(
        [sluice_executable(), "workspace", "rotate-key", workspace_id, *options, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def first_refusal(
    http: httpx.Client, track: Route, key: str, timeout_s: float
) -> tuple[datetime | None, datetime]:
    """Poll the native route with ``key`` until it answers 401: when the last request that
    still got 200 was sent (None: there was none), and when the 401 came. The gateway checks
    a key between a request's sending and its answer, so a key that stops exactly at its
    end has every 200 sent before the end and every 401 answered after it."""
    deadline = time.monotonic() + timeout_s
    last_ok_sent = None
    while True:
        sent_at = utc_now()
        status = track(http, key).status_code
        if status == 401:
            return last_ok_sent, utc_now()
        assert status == 200, status
        last_ok_sent = sent_at
        if time.monotonic() > deadline:
            pytest.fail(f"the key still worked {timeout_s}s on")
        time.sleep(0.05)


def stops_at(http: httpx.Client, track: Route, key: str, ends_at: datetime) -> None:
    """``key`` works until ``ends_at`` and not a moment longer (not a cache TTL later)."""
    last_ok_sent, refused_at = first_refusal(http, track, key, timeout_s=30)
    assert last_ok_sent is None or last_ok_sent < ends_at, (last_ok_sent, ends_at)
    assert refused_at >= ends_at, (refused_at, ends_at)


def test_the_old_key_works_through_its_grace_then_every_route_refuses_it(stack: Stack) -> None:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as http:
        ws, old, every = prepared(stack, http)
        assert statuses(http, every, old) == all_ok(every)  # now cached, with no end

        rotated = rotate(stack, ws, "--grace-s", "3")
        new = rotated["write_key"]
        ends_at = datetime.fromisoformat(rotated["old_key_expires_at"])
        assert rotated["workspace_id"] == ws
        assert statuses(http, every, new) == all_ok(every)  # at once, on every route
        during = statuses(http, every, old)
        assert utc_now() < ends_at, "too slow to check the grace period: raise --grace-s"
        assert during == all_ok(every)

        stops_at(http, every["native track"], old, ends_at)
        refused_as_unknown(http, every, old)
        assert statuses(http, every, new) == all_ok(every)


def test_no_grace_revokes_at_once(stack: Stack) -> None:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as http:
        ws, old, every = prepared(stack, http)
        assert statuses(http, every, old) == all_ok(every)  # cached, with no end

        rotated = rotate(stack, ws, "--grace-s", "0")
        # The gateway had the key cached for 30 s; the rotation notice ends that at once.
        first_refusal(http, every["native track"], old, timeout_s=NOTICE_S)
        refused_as_unknown(http, every, old)
        assert statuses(http, every, rotated["write_key"]) == all_ok(every)


def test_a_second_rotation_does_not_extend_the_first_ones_grace(stack: Stack) -> None:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as http:
        ws, first, every = prepared(stack, http)
        assert statuses(http, every, first) == all_ok(every)

        one = rotate(stack, ws, "--grace-s", "3")
        two = rotate(stack, ws)  # the default grace: a day, for the key made by the first
        first_ends_at = datetime.fromisoformat(one["old_key_expires_at"])
        second_ends_at = datetime.fromisoformat(two["old_key_expires_at"])
        assert second_ends_at - utc_now() > timedelta(hours=23)

        stops_at(http, every["native track"], first, first_ends_at)
        refused_as_unknown(http, every, first)
        assert statuses(http, every, one["write_key"]) == all_ok(every)  # its day runs
        assert statuses(http, every, two["write_key"]) == all_ok(every)
