"""``sluice check worker`` and ``sluice check deliverer`` against real processes, run as a
container healthcheck runs them (docs/operations.md); and ``sluice flower`` listing every
Sluice queue."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import httpx
from sqlalchemy import Engine

from sluice.actions import Action
from sluice.cli.embedded_redis import EmbeddedRedis, free_port
from sluice.ops.health import control_app
from sluice.settings import Settings
from sluice.store.automations import add_automation
from tests.conftest import Stack, sluice_env
from tests.processes import DELIVERY_WORKER_COMMAND, WORKER_COMMAND, SluiceProcess
from tests.sluice_checks import run_check, until_check


def test_check_worker_passes_against_the_stacks_worker(stack: Stack) -> None:
    result = run_check(["worker"], sluice_env(stack.redis_url, stack.database_url))
    assert result.code == 0, result.output
    assert "consumes sluice.ingest" in result.output
    # The stack's worker consumes sluice.ingest alone: the automations' queue is not its.
    other = run_check(
        ["worker", "--queue", "sluice.automations"],
        sluice_env(stack.redis_url, stack.database_url),
    )
    assert other.code == 1 and "does not consume sluice.automations" in other.output


def test_check_worker_follows_whether_the_worker_consumes(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'unused.db'}"  # no batch is sent
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    env = sluice_env(redis_server.url, database_url)
    worker = SluiceProcess(WORKER_COMMAND, env, tmp_path / "worker.log")
    try:
        absent = run_check(["worker", "--timeout-s", "1"], env)
        assert absent.code == 1 and "did not answer" in absent.output

        worker.start().wait_for_log(" ready.")
        assert run_check(["worker"], env).code == 0

        # Alive and answering, but no longer taking sluice.ingest: unhealthy.
        app = control_app(Settings(redis_url=redis_server.url, database_url=database_url), 5)
        try:
            app.control.cancel_consumer("sluice.ingest", reply=True, timeout=5)
            idle = run_check(["worker"], env)
            assert idle.code == 1 and "does not consume sluice.ingest" in idle.output
            app.control.add_consumer("sluice.ingest", reply=True, timeout=5)
        finally:
            app.close()
        assert run_check(["worker"], env).code == 0

        # The broker restarts: unhealthy while it is down, healthy again once the worker
        # has reconnected and consumes again.
        redis_server.stop()
        down = run_check(["worker", "--timeout-s", "1"], env)
        assert down.code == 1 and "broker does not answer" in down.output
        redis_server = EmbeddedRedis(tmp_path / "redis", port=redis_server.port).start()
        until_check(["worker"], env, 0, timeout_s=60)

        worker.stop()
        stopped = run_check(["worker", "--timeout-s", "1"], env)
        assert stopped.code == 1 and "did not answer" in stopped.output
    finally:
        worker.stop()
        redis_server.stop()


def test_check_deliverer_follows_its_loop(
    tmp_path: Path, isolated_redis_url: str, database_url: str
) -> None:
    heartbeat = tmp_path / "deliverer.heartbeat"
    env = sluice_env(
        isolated_redis_url, database_url, SLUICE_DELIVERER_HEARTBEAT_PATH=str(heartbeat)
    )
    absent = run_check(["deliverer"], env)
    assert absent.code == 1 and "no heartbeat" in absent.output

    deliverer = SluiceProcess(DELIVERY_WORKER_COMMAND, env, tmp_path / "deliverer.log").start()
    try:
        deliverer.wait_for_log("deliverer ready")
        running = until_check(["deliverer"], env, 0, timeout_s=10)
        assert "heartbeat" in running.output

        # Frozen (alive, its loop not turning): unhealthy once the heartbeat is too old.
        assert deliverer.process is not None
        os.kill(deliverer.process.pid, signal.SIGSTOP)
        try:
            frozen = until_check(["deliverer", "--max-age-s", "2"], env, 1, timeout_s=15)
            assert "old" in frozen.output
        finally:
            os.kill(deliverer.process.pid, signal.SIGCONT)
        until_check(["deliverer", "--max-age-s", "2"], env, 0, timeout_s=15)

        deliverer.stop()
        assert deliverer.process.returncode == 0
        stopped = run_check(["deliverer"], env)
        assert stopped.code == 1 and "no heartbeat" in stopped.output
    finally:
        deliverer.stop()


def test_flower_lists_every_sluice_queue(stack: Stack, engine: Engine, tmp_path: Path) -> None:
    workspace = stack.new_workspace()
    queue = f"crm.sync.{uuid.uuid4().hex[:8]}"
    add_automation(
        engine,
        workspace.workspace_id,
        "Signed Up",
        Action.TASK,
        target="crm.tasks.sync",
        queue=queue,
        filters={},
        allow_private_webhooks=False,
    )
    port = free_port()
    env = sluice_env(stack.redis_url, stack.database_url, FLOWER_BASIC_AUTH="ops:secret")
    flower = SluiceProcess(["sluice", "flower", f"--port={port}"], env, tmp_path / "flower.log")
    try:
        flower.start().wait_for_http(f"http://127.0.0.1:{port}/healthcheck")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/queues/length", timeout=10).status_code == 401
        lengths = httpx.get(f"{base}/api/queues/length", auth=("ops", "secret"), timeout=10)
        names = {item["name"] for item in lengths.json()["active_queues"]}
        assert {"sluice.ingest", "sluice.automations", queue} <= names
        page = httpx.get(f"{base}/broker", auth=("ops", "secret"), timeout=10).text
        for name in ("sluice.ingest", "sluice.automations", queue):
            assert name in page
    finally:
        flower.stop()
