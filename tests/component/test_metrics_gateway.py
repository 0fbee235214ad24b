"""The gateway's ``/metrics`` in process: its request counts reach Redis by the background
flush (and at shutdown), a dead Redis gives a 503 and never a traceback, and queue depths
are read from a RabbitMQ broker by passive declares."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from kombu.connection import Connection
from kombu.entity import Queue
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from sluice.cli.embedded_redis import free_port
from sluice.gateway import create_app
from sluice.ops.metrics.depth import ScrapeGauges
from sluice.ops.metrics.families import HTTP_REQUESTS
from sluice.producer import keys
from sluice.settings import Settings
from tests.services import service_missing


def samples_of(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_request_counts_reach_redis_by_template_and_the_scrape_shows_them(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> None:
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.get(f"/v1/events/{uuid.uuid4().hex}").status_code == 401
        assert client.get("/nowhere").status_code == 404
    # The client's exit ran the app's shutdown, which flushed what the loop had not yet.
    stored = redis.Redis.from_url(isolated_redis_url).hgetall(keys.metric(HTTP_REQUESTS.name))
    assert stored == {
        b'["/v1/events/{message_id}","GET","401"]': b"3",
        b'["unmatched","GET","404"]': b"1",
    }
    with TestClient(create_app(settings)) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200
    samples = samples_of(answer.text)
    key = frozenset({"route": "/v1/events/{message_id}", "method": "GET", "status": "401"}.items())
    assert samples[("sluice_http_requests_total", key)] == 3
    depth = {dict(labels)["queue"] for name, labels in samples if name == "sluice_queue_depth"}
    assert {"sluice.ingest", "sluice.automations"} <= depth


def test_metrics_answer_503_while_redis_is_down(database_url: str, engine: Engine) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(redis_url=dead, database_url=database_url, publish_timeout_s=0.5)
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 503
    assert answer.text.startswith("metrics unavailable: ConnectionError")
    assert "Traceback" not in answer.text


@pytest.fixture
def amqp_url() -> Iterator[str]:
    url = os.environ.get("SLUICE_TEST_AMQP_URL", "")
    if not url.startswith("amqp"):
        service_missing("RabbitMQ: SLUICE_TEST_AMQP_URL is not set")
    yield url


def test_queue_depths_come_from_passive_declares_on_rabbitmq(amqp_url: str, engine: Engine) -> None:
    name = f"sluice-metrics-test-{uuid.uuid4().hex[:8]}"
    with Connection(amqp_url) as conn:
        queue = Queue(name, auto_delete=False, durable=False)
        producer = conn.Producer()
        for n in range(2):
            producer.publish({"n": n}, routing_key=name, declare=[queue])
        try:
            gauges = ScrapeGauges(amqp_url, engine, timeout_s=2)
            missing = f"sluice-never-declared-{uuid.uuid4().hex[:8]}"
            assert gauges.depths([name, missing]) == {name: 2, missing: 0}
        finally:
            queue.bind(conn.default_channel).delete()


def test_a_failing_route_counts_as_500_and_odd_methods_as_other(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> None:
    """An unhandled error is what the client gets, a 500; a method outside the usual ones is
    ``other`` (any token is a method to HTTP: each would be a series kept for ever)."""
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom/{n}", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom/1").status_code == 500
        for method in ("BREW", "PROPFIND"):
            assert client.request(method, "/v1/track").status_code == 405
    stored = redis.Redis.from_url(isolated_redis_url).hgetall(keys.metric(HTTP_REQUESTS.name))
    assert stored == {
        b'["/boom/{n}","GET","500"]': b"1",
        b'["/v1/track","other","405"]': b"2",
    }
