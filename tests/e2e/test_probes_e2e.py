"""``/readyz`` of a real gateway process follows its Redis and its database: 503 naming the
part while it is gone, 200 once it is back (docs/operations.md). The Redis is a server of
the test's own, stopped and started again on its port; PostgreSQL is reached through a TCP
proxy the test cuts and restores (an SQLite file cannot be taken away from a process that
holds it open)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from sluice.cli.embedded_redis import EmbeddedRedis, free_port
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from tests.processes import GATEWAY_COMMAND, SluiceProcess, with_option
from tests.services import service_missing
from tests.sluice_checks import run_check
from tests.tcp_proxy import TcpProxy


@dataclass
class ProbedGateway:
    url: str
    redis: EmbeddedRedis
    proxy: TcpProxy
    process: SluiceProcess

    def readyz(self, status: int, timeout_s: float = 20) -> dict[str, Any]:
        """Poll /readyz until it answers ``status``; its body."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=5)
            except httpx.TimeoutException:
                pytest.fail(f"/readyz did not answer in 5 s:\n{self.process.log_text()[-3000:]}")
            if answer.status_code == status:
                body: dict[str, Any] = answer.json()
                return body
            if time.monotonic() > deadline:
                pytest.fail(f"/readyz stayed {answer.status_code}: {answer.text}")
            time.sleep(0.2)


@pytest.fixture
def probed(postgres_url: str, tmp_path: Path) -> Iterator[ProbedGateway]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    engine.dispose()
    server = make_url(postgres_url)
    if server.host is None:
        service_missing("PostgreSQL over TCP is needed for the proxy")
    proxy = TcpProxy(server.host, server.port or 5432).start()
    proxied = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    port = free_port()
    env = {
        "SLUICE_REDIS_URL": redis_server.url,
        "SLUICE_BROKER_URL": redis_server.url,
        "SLUICE_DATABASE_URL": proxied,
    }
    command = with_option(with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port))
    gateway = SluiceProcess(command, env, tmp_path / "gateway.log").start()
    probed = ProbedGateway(f"http://127.0.0.1:{port}", redis_server, proxy, gateway)
    try:
        gateway.wait_for_http(f"http://127.0.0.1:{port}/livez")
        yield probed
    finally:
        gateway.stop()
        probed.redis.stop()  # the server the test started again, if it did
        proxy.cut()


def test_readyz_follows_redis(probed: ProbedGateway, tmp_path: Path) -> None:
    readyz = f"{probed.url}/readyz"
    assert probed.readyz(200)["checks"] == {
        "redis": "ok",
        "broker": "ok",
        "database": "ok",
        "schema": "ok",
    }
    assert run_check(["gateway", "--url", readyz], {}).code == 0

    probed.redis.stop()
    body = probed.readyz(503)
    assert body["status"] == "not ready"
    checks = body["checks"]
    assert checks["redis"] != "ok" and checks["broker"] != "ok", checks
    assert checks["database"] == "ok" and checks["schema"] == "ok"
    assert httpx.get(f"{probed.url}/livez", timeout=5).json() == {"status": "ok"}
    failed = run_check(["gateway", "--url", readyz], {})
    assert failed.code == 1 and "redis:" in failed.output

    # The same server again (its port and its data), stopped by the fixture.
    probed.redis = EmbeddedRedis(tmp_path / "redis", port=probed.redis.port).start()
    assert probed.readyz(200)["status"] == "ready"
    assert run_check(["gateway", "--url", readyz], {}).code == 0


def test_readyz_follows_the_database(probed: ProbedGateway) -> None:
    probed.readyz(200)
    probed.proxy.cut()
    checks = probed.readyz(503)["checks"]
    assert checks["redis"] == "ok" and checks["broker"] == "ok"
    assert checks["database"] != "ok"
    assert checks["schema"] == "not checked: no database"
    probed.proxy.restore()
    assert probed.readyz(200)["checks"]["database"] == "ok"
