"""``sluice events export`` as users run it: the real command over a database the real
worker filled, its lines beside what ``GET /v1/events/{id}`` answers, its errors, and a
reader that stops early (``| head``)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sluice.producer import Event
from sluice.producer.envelope import Envelope
from sluice.producer.transport import BrokerTransport
from sluice.store.workspaces import configure_workspace
from tests.conftest import Stack
from tests.processes import sluice_executable

EVENT_TIME = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def _run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sluice_executable(), "events", "export", *args],
        env={**os.environ, "SLUICE_DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _published(stack: Stack, events: list[Event]) -> list[str]:
    transport = BrokerTransport(stack.redis_url)
    for start in range(0, len(events), 500):
        transport.publish(Envelope(events=events[start : start + 500]))
    transport.close()
    ids = [event.message_id for event in events]
    stack.wait_for_outcomes(events[0].workspace_id, ids)
    return ids


@pytest.fixture(scope="module")
def decided(stack: Stack) -> tuple[str, str, dict[str, str]]:
    """A workspace whose events the worker decided: three accepted, two discarded, one
    rejected. Its id, write key and the message ids by role."""
    workspace = stack.new_workspace()
    ws = workspace.workspace_id
    configure_workspace(stack.engine, ws, {"unknown_user_grace_s": "0"})

    def event(minute: int, **fields: Any) -> Event:
        return Event(workspace_id=ws, timestamp=EVENT_TIME + timedelta(minutes=minute), **fields)

    made = {
        "view": event(3, kind="custom", name="Page Viewed", user_id="u1", properties={"n": 1}),
        "login": event(1, kind="login", user_id="u1", traits={"plan": "pro"}),
        "order": event(2, kind="confirmation", user_id="u1", properties={"orderId": "o-9"}),
        "again": event(4, kind="confirmation", user_id="u1", properties={"orderId": "o-9"}),
        "bot": event(5, kind="custom", name="Crawl", context={"user_agent": "Googlebot/2.1"}),
        "stranger": event(6, kind="update", user_id="nobody", traits={"plan": "free"}),
    }
    _published(stack, list(made.values()))
    return ws, workspace.write_key, {role: e.message_id for role, e in made.items()}


def test_every_decided_event_is_a_line_with_what_the_api_shows(
    stack: Stack, decided: tuple[str, str, dict[str, str]]
) -> None:
    ws, write_key, ids = decided
    result = _run(stack, ws, "--triggers")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_id = {line["message_id"]: line for line in lines}
    assert {role: (by_id[m]["status"], by_id[m]["reason"]) for role, m in ids.items()} == {
        "view": ("accepted", None),
        "login": ("accepted", None),
        "order": ("accepted", None),
        "again": ("discarded", "duplicate_order"),
        "bot": ("discarded", "bot"),
        "stranger": ("rejected", "unknown_user"),
    }
    assert len(lines) == len(ids)
    # Stored events by event time first (they happened before the worker decided anything).
    assert [line["message_id"] for line in lines[:3]] == [ids["login"], ids["order"], ids["view"]]
    assert by_id[ids["view"]]["properties"] == {"n": 1}
    assert json.loads(by_id[ids["again"]]["raw"])["properties"] == {"orderId": "o-9"}

    with httpx.Client(base_url=stack.gateway_url, auth=(write_key, ""), timeout=10) as http:
        for message_id, line in by_id.items():
            shown = http.get(f"/v1/events/{message_id}").json()
            assert {key: line[key] for key in shown} == shown


def test_filters_by_status_and_event_time(
    stack: Stack, decided: tuple[str, str, dict[str, str]]
) -> None:
    ws, _, ids = decided
    discarded = _run(stack, ws, "--status", "discarded")
    assert discarded.returncode == 0, discarded.stderr
    assert {json.loads(line)["message_id"] for line in discarded.stdout.splitlines()} == {
        ids["again"],
        ids["bot"],
    }
    since = (EVENT_TIME + timedelta(minutes=2)).isoformat()
    until = (EVENT_TIME + timedelta(minutes=3)).isoformat()
    window = _run(stack, ws, "--since", since, "--until", until, "--status", "accepted")
    assert [json.loads(line)["message_id"] for line in window.stdout.splitlines()] == [ids["order"]]
    limited = _run(stack, ws, "--limit", "2")
    assert len(limited.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-workspace"], "Error: no workspace 'no-such-workspace'"),
        (["{ws}", "--since", "last week"], "Error: --since: 'last week' is not an ISO 8601 time"),
        (["{ws}", "--status", "queued"], "Error: queued events are not in the database"),
        (["{ws}", "--since", "2026-02-01", "--until", "2026-01-01"], "Error: --since must be"),
    ],
)
def test_errors_are_one_line_and_nothing_on_stdout(
    stack: Stack, decided: tuple[str, str, dict[str, str]], args: list[str], message: str
) -> None:
    result = _run(stack, *(arg.format(ws=decided[0]) for arg in args))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


def test_a_reader_that_stops_early_ends_the_export_quietly(stack: Stack) -> None:
    workspace = stack.new_workspace()
    padding = "x" * 400  # 1 500 lines of over 500 bytes: far more than a pipe holds
    _published(
        stack,
        [
            Event(
                workspace_id=workspace.workspace_id,
                kind="custom",
                name="Page Viewed",
                user_id=f"u{i}",
                timestamp=EVENT_TIME + timedelta(seconds=i),
                properties={"padding": padding},
            )
            for i in range(1500)
        ],
    )
    command = f"set -o pipefail; '{sluice_executable()}' events export {workspace.workspace_id}"
    result = subprocess.run(
        ["bash", "-c", command + " | head -n 2"],
        env={**os.environ, "SLUICE_DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert [json.loads(line)["properties"]["padding"] for line in result.stdout.splitlines()] == [
        padding,
        padding,
    ]
