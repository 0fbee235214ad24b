"""``sluice gateway --workers N``: N processes share the port, each answers with events
queued; the access log is off unless asked for."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from sluice.cli.embedded_redis import free_port
from tests.conftest import Stack, sluice_env
from tests.processes import GATEWAY_COMMAND, SluiceProcess, children_of, with_option


def test_gateway_processes_share_the_port_and_queue_every_event(
    stack: Stack, tmp_path: Path
) -> None:
    workspace = stack.new_workspace()
    port = free_port()
    command = [
        *with_option(with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port)),
        "--workers",
        "2",
        "--access-log",
    ]
    gateway = SluiceProcess(
        command, sluice_env(stack.redis_url, stack.database_url), tmp_path / "gateway.log"
    ).start()
    try:
        gateway.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        assert gateway.process is not None
        deadline = time.monotonic() + 30
        while len(children_of(gateway.process.pid, "multiprocessing")) < 2:
            assert time.monotonic() < deadline, gateway.log_text()
            time.sleep(0.1)
        message_ids = []
        for i in range(40):  # new connections, spread over both processes by the kernel
            with httpx.Client(auth=(workspace.write_key, ""), timeout=10) as http:
                answer = http.post(
                    f"http://127.0.0.1:{port}/v1/track",
                    json={"userId": f"u{i}", "event": "Page Viewed"},
                )
            assert answer.status_code == 200, answer.text
            message_ids.append(answer.json()["message_id"])
        outcomes = stack.wait_for_outcomes(workspace.workspace_id, message_ids)
        assert set(outcomes.values()) == {("accepted", None)}
        assert '"POST /v1/track HTTP/1.1" 200' in gateway.log_text()
    finally:
        gateway.stop()
    assert "POST /v1/track" not in stack.gateway.log_text()  # the stack's: no access log
