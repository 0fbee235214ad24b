"""The gateway's probes in process (docs/operations.md), and the readable arguments every
ingest message carries for Flower. The probes against real processes whose Redis and
database go away are in tests/e2e/test_probes_e2e.py."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from sluice.cli.embedded_redis import free_port
from sluice.gateway import create_app
from sluice.ops.health import Readiness, schema_heads
from sluice.producer.events import Event
from sluice.producer.publisher import Publisher
from sluice.producer.transport import BrokerTransport
from sluice.producer.wire import INGEST_QUEUE
from sluice.settings import Settings
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.workspaces import create_workspace
from tests.services import service_missing


@pytest.fixture
def unmigrated_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'empty.db'}"


PROBES = ("/livez", "/readyz", "/healthz", "/metrics")


def test_readyz_names_the_schema_until_the_database_is_migrated(
    isolated_redis_url: str, unmigrated_url: str
) -> None:
    settings = Settings(redis_url=isolated_redis_url, database_url=unmigrated_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/livez").json() == {"status": "ok"}
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {
            "status": "not ready",
            "checks": {
                "redis": "ok",
                "broker": "ok",
                "database": "ok",
                "schema": "not migrated (run `sluice migrate`)",
            },
        }
        engine = make_engine(unmigrated_url)
        upgrade(engine, "0003")
        checks = client.get("/readyz").json()["checks"]
        assert checks["schema"] == f"at revision 0003, this release needs {schema_heads()[0]}"
        upgrade(engine)
        answer = client.get("/readyz")
        assert answer.status_code == 200
        assert answer.json() == {
            "status": "ready",
            "checks": {"redis": "ok", "broker": "ok", "database": "ok", "schema": "ok"},
        }
        # A newer release migrated first (a rolling upgrade): this one stays ready.
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_newer'"))
        engine.dispose()
        assert client.get("/readyz").status_code == 200


def test_the_openapi_document_says_what_each_probe_checks(
    isolated_redis_url: str, database_url: str
) -> None:
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    paths = create_app(settings).openapi()["paths"]
    assert "/v1/track" in paths
    summaries = {path: paths[path]["get"]["summary"] for path in PROBES}
    assert summaries["/livez"].startswith("Liveness")  # README: /livez is the liveness probe
    assert "Liveness" not in summaries["/healthz"]  # it checks Redis and the database
    assert summaries["/readyz"].startswith("Readiness")
    for path in PROBES:
        responses = paths[path]["get"]["responses"]
        assert all(answer.get("description") for answer in responses.values()), path
    for path in ("/readyz", "/healthz", "/metrics"):
        assert "503" in paths[path]["get"]["responses"], path
    assert "text/plain" in next(iter(paths["/metrics"]["get"]["responses"]["200"]["content"]))


def test_an_unreachable_redis_fails_redis_and_broker_within_the_timeout(
    database_url: str,
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    readiness = Readiness(Settings(redis_url=nobody, database_url=database_url))
    try:
        started = time.monotonic()
        checks = readiness.check_now()
        took_s = time.monotonic() - started
    finally:
        readiness.close()
    assert checks["database"] == "ok" and checks["schema"] == "ok"
    for part in ("redis", "broker"):
        assert "ConnectionError" in checks[part] or "timed out" in checks[part], checks
    assert took_s < readiness.timeout_s + 1.5


def test_an_unreachable_amqp_broker_fails_the_broker_alone(
    isolated_redis_url: str, database_url: str
) -> None:
    nobody = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    settings = Settings(redis_url=isolated_redis_url, broker_url=nobody, database_url=database_url)
    readiness = Readiness(settings)
    try:
        checks = readiness.check_now()
    finally:
        readiness.close()
    assert checks["redis"] == "ok" and checks["database"] == "ok"
    assert checks["broker"] != "ok"


def test_a_rabbitmq_broker_is_checked_by_connecting(
    isolated_redis_url: str, database_url: str
) -> None:
    amqp_url = os.environ.get("SLUICE_TEST_AMQP_URL", "")
    if not amqp_url.startswith("amqp"):
        service_missing("RabbitMQ: SLUICE_TEST_AMQP_URL is not set")
    settings = Settings(
        redis_url=isolated_redis_url, broker_url=amqp_url, database_url=database_url
    )
    readiness = Readiness(settings)
    try:
        checks = readiness.check_now()
    finally:
        readiness.close()
    assert checks == {"redis": "ok", "broker": "ok", "database": "ok", "schema": "ok"}


def queued_headers(redis_url: str) -> list[dict[str, object]]:
    raw = redis.Redis.from_url(redis_url).lrange(INGEST_QUEUE, 0, -1)
    return [json.loads(message)["headers"] for message in raw]


def events(count: int) -> list[Event]:
    return [
        Event.model_validate(
            {"workspace_id": "w", "kind": "custom", "name": "E", "user_id": f"u{i}"}
        )
        for i in range(count)
    ]


def test_a_published_batch_reads_as_its_id_and_size(isolated_redis_url: str) -> None:
    publisher = Publisher(BrokerTransport(isolated_redis_url), batch_events=3)
    try:
        publisher.publish(events(4))
    finally:
        publisher.close()
    headers = queued_headers(isolated_redis_url)
    assert len(headers) == 2
    reprs = [str(header["argsrepr"]) for header in headers]
    for label, header in zip(reprs, headers, strict=True):
        assert label.startswith(f"batch {header['id']} · ")
        assert header["kwargsrepr"] == "{}"
    assert sorted(text.rsplit(" · ", 1)[1] for text in reprs) == ["1 event", "3 events"]


def test_the_gateways_batches_read_alike(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> None:
    workspace = create_workspace(engine, "argsrepr")
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        client.auth = (workspace.write_key, "")
        batch = [{"type": "track", "userId": "u", "event": "E"} for _ in range(5)]
        assert client.post("/v1/batch", json={"batch": batch}).status_code == 200
    [header] = queued_headers(isolated_redis_url)
    assert header["argsrepr"] == f"batch {header['id']} · 5 events"
    assert header["kwargsrepr"] == "{}"
