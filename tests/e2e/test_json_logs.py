"""SLUICE_LOG_FORMAT=json with real processes: every line a worker and a gateway write on
stderr (Celery's own, uvicorn's own, ours) is one JSON object, and the worker's lines about a
batch carry its batch id, and those about one event its message id and workspace."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from sluice.cli.embedded_redis import free_port
from sluice.store.schema import outcomes
from sluice.store.workspaces import create_workspace
from tests.conftest import sluice_env
from tests.processes import GATEWAY_COMMAND, WORKER_COMMAND, sluice_executable, with_option


class SplitProcess:
    """A ``sluice`` command whose stdout and stderr go to two files (stderr is the log)."""

    def __init__(self, command: Sequence[str], env: dict[str, str], folder: Path) -> None:
        self.stdout_path = folder / "stdout.log"
        self.stderr_path = folder / "stderr.log"
        folder.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sluice_executable(), *command[1:]],
                env={**os.environ, **env},
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )

    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr_path.read_text().splitlines() if line.strip()]

    def wait_until(self, done: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {what}; stderr:\n{self.stderr_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def json_lines(process: SplitProcess) -> list[dict[str, Any]]:
    """Every stderr line, each parsed as one JSON object (a line that is not fails)."""
    parsed = []
    for line in process.stderr_lines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a stderr line is not JSON: {line!r}")
        assert isinstance(record, dict), line
        assert {"timestamp", "level", "logger", "message"} <= set(record), line
        parsed.append(record)
    return parsed


@pytest.fixture
def json_stack(
    isolated_redis_url: str, database_url: str, tmp_path: Path
) -> Iterator[tuple[SplitProcess, SplitProcess, str]]:
    """A worker and a gateway logging JSON, on a Redis database no other worker reads."""
    env = sluice_env(isolated_redis_url, database_url, SLUICE_LOG_FORMAT="json")
    port = free_port()
    gateway_command = with_option(
        with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port)
    )
    worker = SplitProcess(WORKER_COMMAND, env, tmp_path / "worker")
    gateway = SplitProcess([*gateway_command, "--access-log"], env, tmp_path / "gateway")
    try:
        worker.wait_until(
            lambda: any(" ready." in line for line in worker.stderr_lines()), "ready worker"
        )
        url = f"http://127.0.0.1:{port}"
        gateway.wait_until(lambda: _answers(f"{url}/healthz"), "gateway answering")
        yield worker, gateway, url
    finally:
        gateway.stop()
        worker.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_worker_and_gateway_write_one_json_object_a_line_with_the_ids(
    json_stack: tuple[SplitProcess, SplitProcess, str], engine: Engine
) -> None:
    worker, gateway, url = json_stack
    workspace = create_workspace(engine, "json-logs")
    order = {"type": "track", "userId": "u1", "event": "Order Completed"}
    body = {
        "batch": [
            {**order, "properties": {"orderId": "o-1"}},
            {**order, "properties": {"orderId": "o-1"}},  # the same order: discarded, logged
        ]
    }
    answer = httpx.post(f"{url}/v1/batch", json=body, auth=(workspace.write_key, ""), timeout=10)
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["message_ids"]

    decided: dict[str, tuple[str, str]] = {}

    def both_decided() -> bool:
        query = select(outcomes.c.message_id, outcomes.c.status, outcomes.c.batch_id).where(
            outcomes.c.workspace_id == workspace.workspace_id
        )
        with engine.connect() as conn:
            decided.update(
                {row.message_id: (row.status, row.batch_id) for row in conn.execute(query)}
            )
        return {first, second} <= set(decided)

    worker.wait_until(both_decided, "outcomes for both events")
    assert {decided[first][0], decided[second][0]} == {"accepted", "discarded"}
    discarded = first if decided[first][0] == "discarded" else second
    batch_id = decided[discarded][1]
    worker.wait_until(
        lambda: any(batch_id in line for line in worker.stderr_lines()), "a line of the batch"
    )
    gateway.wait_until(
        lambda: any("/v1/batch" in line for line in gateway.stderr_lines()), "an access line"
    )
    worker.stop()
    gateway.stop()  # their shutdown lines are checked too

    worker_lines = json_lines(worker)
    about_batch = [r for r in worker_lines if r.get("batch_id") == batch_id]
    assert about_batch, "no worker line carries the batch id"
    (about_event,) = [r for r in about_batch if r.get("message_id") == discarded]
    assert about_event["workspace_id"] == workspace.workspace_id
    assert about_event["level"] == "INFO"
    assert "duplicate_order" in about_event["message"]
    assert about_event["logger"] == "sluice.worker.ingest.batch"
    assert any(r["logger"].startswith("celery") for r in worker_lines)  # Celery's own lines

    gateway_lines = json_lines(gateway)
    assert any(r["logger"] == "uvicorn.error" for r in gateway_lines)  # uvicorn's own lines
    access = [r for r in gateway_lines if r["logger"] == "uvicorn.access"]
    assert any("POST /v1/batch" in r["message"] for r in access)
