"""Bad input gets a clear 4xx JSON error and queues nothing; a dead queue gets 503.

The gateway runs in process against a real Redis database that no worker reads, so
"nothing queued" is checked as "the Redis database is still empty"."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from sluice.cli.embedded_redis import EmbeddedRedis, free_port
from sluice.gateway import create_app
from sluice.settings import Settings
from sluice.store.workspaces import create_workspace
from tests.services import keys_besides_metrics

KB = 1024


@pytest.fixture
def gateway(
    isolated_redis_url: str, database_url: str, engine: object
) -> Iterator[tuple[TestClient, str]]:
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    workspace = create_workspace(engine, "gateway-test")
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        client.auth = (workspace.write_key, "")
        yield client, isolated_redis_url


def assert_nothing_queued(redis_url: str) -> None:
    assert keys_besides_metrics(redis.Redis.from_url(redis_url)) == 0


def padded_track(size_bytes: int) -> dict[str, object]:
    return {"userId": "u", "event": "Big", "properties": {"pad": "x" * size_bytes}}


@pytest.mark.parametrize(
    ("path", "body", "status", "error", "field"),
    [
        ("/v1/track", b"{not json", 400, "invalid_json", None),
        ("/v1/track", b"", 400, "invalid_json", None),
        ("/v1/track", b"[1, 2]", 400, "invalid_json", None),
        ("/v1/track", b'{"userId": "u"}', 400, "invalid", "event"),
        ("/v1/track", b'{"userId": "u", "event": ""}', 400, "invalid", "event"),
        ("/v1/track", b'{"event": "Anonymous"}', 400, "invalid", "userId"),
        (
            "/v1/track",
            b'{"userId": "u", "event": "E", "properties": "nope"}',
            400,
            "invalid",
            "properties",
        ),
        (
            "/v1/track",
            b'{"userId": "u", "event": "E", "timestamp": "yesterday"}',
            400,
            "invalid",
            "timestamp",
        ),
        (
            "/v1/track",
            b'{"userId": "u", "event": "E", "messageId": "' + b"m" * 101 + b'"}',
            400,
            "invalid",
            "messageId",
        ),
        ("/v1/identify", b'{"type": "track", "userId": "u", "event": "E"}', 400, "invalid", "type"),
        ("/v1/batch", b'{"batch": []}', 400, "invalid", "batch"),
        ("/v1/batch", b'{"events": [{}]}', 400, "invalid", "batch"),
        (
            "/v1/batch",
            b'{"batch": [{"type": "track", "userId": "u"}, {"type": "identify"}]}',
            400,
            "invalid",
            "batch.0.event",
        ),
        (
            "/v1/batch",
            b'{"batch": [{"type": "teleport", "userId": "u"}]}',
            400,
            "invalid",
            "batch.0.type",
        ),
        ("/v1/batch", b'{"batch": ["track"]}', 400, "invalid", "batch.0"),
        (
            "/v1/track",
            b'{"userId": "u", "event": "E", "properties": {"a": "x\\u0000y"}}',
            400,
            "invalid",
            None,
        ),
        ("/v1/update", b'{"type": "track", "userId": "u", "traits": {}}', 400, "invalid", "type"),
        ("/v1/update", b'{"anonymousId": "a", "traits": {"plan": "pro"}}', 400, "invalid", None),
    ],
)
def test_bad_bodies_get_a_json_error_and_queue_nothing(
    gateway: tuple[TestClient, str],
    path: str,
    body: bytes,
    status: int,
    error: str,
    field: str | None,
) -> None:
    client, redis_url = gateway
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    answer = response.json()
    assert answer["success"] is False
    assert answer["error"] == error
    assert answer["message"]
    assert answer.get("field") == field
    assert_nothing_queued(redis_url)


@pytest.mark.parametrize("auth", [None, ("sk_live_wrong", ""), ("", "password-only")])
def test_missing_or_wrong_write_key_is_401_and_queues_nothing(
    gateway: tuple[TestClient, str], auth: tuple[str, str] | None
) -> None:
    client, redis_url = gateway
    response = client.post("/v1/track", json={"userId": "u", "event": "E"}, auth=auth)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert_nothing_queued(redis_url)


def test_bearer_instead_of_basic_is_401(gateway: tuple[TestClient, str]) -> None:
    client, redis_url = gateway
    response = client.post(
        "/v1/track",
        json={"userId": "u", "event": "E"},
        auth=None,  # type: ignore[arg-type]
        headers={"Authorization": "Bearer sk_live_x"},
    )
    assert response.status_code == 401
    assert_nothing_queued(redis_url)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/track", padded_track(33 * KB)),
        ("/v1/batch", {"batch": [{**padded_track(33 * KB), "type": "track"}]}),
        ("/v1/batch", {"batch": [{**padded_track(20 * KB), "type": "track"}] * 26}),
    ],
)
def test_over_size_events_and_batches_are_413_and_queue_nothing(
    gateway: tuple[TestClient, str], path: str, body: dict[str, object]
) -> None:
    client, redis_url = gateway
    response = client.post(path, json=body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert_nothing_queued(redis_url)


def test_a_gzip_bomb_is_refused_after_decompression(gateway: tuple[TestClient, str]) -> None:
    client, redis_url = gateway
    bomb = gzip.compress(b'{"batch": [' + b" " * (2 * 1024 * KB) + b"]}")
    assert len(bomb) < 500 * KB
    response = client.post(
        "/v1/batch",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert_nothing_queued(redis_url)


def exact_body(size: int) -> bytes:
    """A track call whose JSON body is exactly ``size`` bytes."""
    empty = b'{"userId":"u","event":"E","properties":{"pad":""}}'
    return empty.replace(b'""', b'"' + b"x" * (size - len(empty)) + b'"')


@pytest.mark.parametrize(("size", "status"), [(32 * KB, 200), (32 * KB + 1, 413)])
def test_the_32kb_event_limit_is_exact(
    gateway: tuple[TestClient, str], size: int, status: int
) -> None:
    client, redis_url = gateway
    body = exact_body(size)
    assert len(body) == size
    response = client.post("/v1/track", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert redis.Redis.from_url(redis_url).llen("sluice.ingest") == (1 if status == 200 else 0)


def test_a_queued_event_answers_queued_until_a_worker_decides_it(
    gateway: tuple[TestClient, str],
) -> None:
    client, _redis_url = gateway  # no worker reads this Redis database
    message_id = client.post("/v1/track", json={"userId": "u", "event": "E"}).json()["message_id"]
    outcome = client.get(f"/v1/events/{message_id}")
    assert outcome.status_code == 200
    assert outcome.json()["status"] == "queued"


def test_an_anonymous_identify_is_queued(gateway: tuple[TestClient, str]) -> None:
    client, redis_url = gateway
    response = client.post("/v1/identify", json={"anonymousId": "a-1", "traits": {"x": 1}})
    assert response.status_code == 200
    assert redis.Redis.from_url(redis_url).llen("sluice.ingest") == 1


def test_a_request_is_one_envelope_so_more_than_1000_events_are_refused(
    gateway: tuple[TestClient, str],
) -> None:
    client, redis_url = gateway
    calls = [{"type": "track", "userId": "u", "event": "E"}] * 1001
    response = client.post("/v1/batch", json={"batch": calls})
    assert response.status_code == 413
    assert_nothing_queued(redis_url)
    assert client.post("/v1/batch", json={"batch": calls[:1000]}).status_code == 200
    assert redis.Redis.from_url(redis_url).llen("sluice.ingest") == 1


def test_unreachable_queue_is_503_with_retry_after(database_url: str, engine: object) -> None:
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    workspace = create_workspace(engine, "dead-queue")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(redis_url=dead, database_url=database_url, publish_timeout_s=1.0)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/track", json={"userId": "u", "event": "E"}, auth=(workspace.write_key, "")
        )
        health = client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "queue_unavailable"
    assert health.status_code == 503
    assert health.json()["redis"].startswith("error")


def test_a_batch_queues_its_valid_calls_and_reports_each_invalid_one(
    gateway: tuple[TestClient, str],
) -> None:
    client, redis_url = gateway
    calls = [
        {"type": "track", "userId": "u", "event": "ok", "messageId": "good-0"},
        {"type": "track", "userId": "u"},
        {"type": "track", "userId": "u", "event": "big", "properties": {"pad": "x" * 33 * KB}},
        {"type": "identify", "userId": "u", "messageId": "good-3"},
    ]
    answer = client.post("/v1/batch", json={"batch": calls})
    assert answer.status_code == 200
    assert answer.json()["message_ids"] == ["good-0", "good-3"]
    assert answer.json()["results"] == [
        {"index": 0, "status": "queued", "message_id": "good-0"},
        {
            "index": 1,
            "status": "rejected",
            "error": "invalid",
            "message": "a track call needs an event name",
            "field": "batch.1.event",
        },
        {
            "index": 2,
            "status": "rejected",
            "error": "too_large",
            "message": f"batch.2 is larger than {32 * KB} bytes",
        },
        {"index": 3, "status": "queued", "message_id": "good-3"},
    ]
    queue = redis.Redis.from_url(redis_url)
    assert queue.llen("sluice.ingest") == 1  # one envelope with the two valid calls


def test_backpressure_then_redis_stopped_and_restarted(
    database_url: str, engine: object, tmp_path: Path
) -> None:
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    workspace = create_workspace(engine, "backpressure")
    server = EmbeddedRedis(tmp_path / "redis").start()
    settings = Settings(
        redis_url=server.url,
        database_url=database_url,
        max_queue_depth=2,
        queue_depth_sample_s=0,
        publish_timeout_s=1.0,
    )
    track = {"userId": "u", "event": "E"}
    try:
        with TestClient(create_app(settings)) as client:
            client.auth = (workspace.write_key, "")
            assert [client.post("/v1/track", json=track).status_code for _ in range(2)] == [
                200,
                200,
            ]
            full = client.post("/v1/track", json=track)
            assert full.status_code == 429
            assert full.headers["retry-after"] == "5"
            assert full.json()["error"] == "queue_full"
            queue = redis.Redis.from_url(server.url)
            assert queue.llen("sluice.ingest") == 2  # nothing half-queued

            server.stop()
            down = client.post("/v1/track", json=track)
            assert down.status_code == 503
            assert down.headers["retry-after"] == "5"
            assert client.get("/healthz").status_code == 503

            server = EmbeddedRedis(tmp_path / "redis", port=server.port).start()
            queue = redis.Redis.from_url(server.url)
            assert queue.llen("sluice.ingest") == 2  # AOF: what was acknowledged survived
            queue.delete("sluice.ingest")  # a worker drained it
            assert client.post("/v1/track", json=track).status_code == 200
            assert queue.llen("sluice.ingest") == 1
            assert client.get("/healthz").status_code == 200
    finally:
        server.stop()


def test_prefer_wait_is_bounded_and_says_queued_without_a_worker(
    gateway: tuple[TestClient, str],
) -> None:
    client, _redis_url = gateway  # no worker reads this Redis database
    answer = client.post(
        "/v1/track", json={"userId": "u", "event": "E"}, headers={"Prefer": "respond-async, wait=1"}
    )
    assert answer.status_code == 200
    assert answer.headers["preference-applied"] == "wait=1"
    assert answer.json()["status"] == "queued"
    plain = client.post("/v1/track", json={"userId": "u", "event": "E"})
    assert "preference-applied" not in plain.headers


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_outside_utc_range_are_a_400(gateway: tuple[TestClient, str], stamp: str) -> None:
    client, redis_url = gateway
    single = client.post("/v1/track", json={"userId": "u", "event": "E", "timestamp": stamp})
    assert (single.status_code, single.json()["field"]) == (400, "timestamp")
    batch = client.post(
        "/v1/batch",
        json={"batch": [{"type": "track", "userId": "u", "event": "E", "timestamp": stamp}]},
    )
    assert batch.status_code == 400
    assert_nothing_queued(redis_url)


def test_prefer_wait_is_capped_and_survives_a_database_outage(
    gateway: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.exc

    client, redis_url = gateway
    answer = client.post(
        "/v1/track", json={"userId": "u", "event": "E"}, headers={"Prefer": "wait=100"}
    )
    assert answer.headers["preference-applied"] == "wait=30"

    def database_down(*_args: object) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr("sluice.gateway.prefer.outcomes_of", database_down)
    queued = client.post(
        "/v1/track", json={"userId": "u", "event": "E"}, headers={"Prefer": "wait=5"}
    )
    assert (queued.status_code, queued.json()["status"]) == (200, "queued")
    assert redis.Redis.from_url(redis_url).exists("sluice.ingest")


def test_a_database_outage_during_key_lookup_is_a_503(
    gateway: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.exc

    client, redis_url = gateway

    def database_down(_key: str) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(client.app.state.gateway.keys, "workspace_for", database_down)  # type: ignore[attr-defined]
    answer = client.post("/v1/track", json={"userId": "u", "event": "E"})
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
    assert_nothing_queued(redis_url)


@pytest.mark.parametrize(("header", "wait_s"), [(b"wait=5", 5.0), (b"wait=\xb2", None)])
def test_prefer_wait_counts_only_ascii_digits(header: bytes, wait_s: float | None) -> None:
    # A raw byte 0xB2 reaches the app as "²" (headers are latin-1), and "²".isdigit() is
    # true: this used to raise, a 500 after the event was queued.
    from starlette.requests import Request

    from sluice.gateway.prefer import requested_wait_s

    request = Request({"type": "http", "headers": [(b"prefer", header)]})
    assert requested_wait_s(request) == wait_s


def test_a_database_outage_while_reading_an_outcome_is_a_503(
    gateway: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.exc

    client, _redis_url = gateway
    queued = client.post("/v1/track", json={"userId": "u", "event": "E"}).json()

    def database_down(*_args: object) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr("sluice.gateway.native.outcome_of", database_down)
    answer = client.get(f"/v1/events/{queued['message_id']}")
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
    assert answer.json()["error"] == "database_unavailable"


def _nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def test_properties_nested_too_deeply_are_a_400_and_queue_nothing(
    gateway: tuple[TestClient, str],
) -> None:
    # Found by fuzzing: 256 levels used to reach orjson's recursion limit, a 500.
    client, redis_url = gateway
    body = '{"userId": "u", "event": "Deep", "properties": ' + _nested(256) + "}"
    answer = client.post("/v1/track", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "nested too deeply" in answer.json()["message"]
    assert_nothing_queued(redis_url)
    shallow = '{"userId": "u", "event": "Deep", "properties": ' + _nested(100) + "}"
    assert client.post("/v1/track", content=shallow).status_code == 200


@pytest.mark.parametrize("message_id", ["a%00b", "x" * 101])
def test_an_id_no_event_can_have_is_a_404_not_a_database_error(
    gateway: tuple[TestClient, str], message_id: str
) -> None:
    # Found by fuzzing: a NUL in the id reached PostgreSQL, which refused it: a 503.
    client, _redis_url = gateway
    answer = client.get(f"/v1/events/{message_id}")
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")


def test_a_known_key_keeps_queueing_while_the_database_is_down(
    isolated_redis_url: str, database_url: str, engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Queueing needs only Redis: a key the gateway saw lately still counts after its cache
    # entry expires, while the database cannot be asked (SLUICE_KEY_CACHE_STALE_S).
    import sqlalchemy.exc
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    workspace = create_workspace(engine, "outage")
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url, key_cache_ttl_s=0)
    with TestClient(create_app(settings)) as client:
        client.auth = (workspace.write_key, "")
        assert client.post("/v1/track", json={"userId": "u", "event": "E"}).status_code == 200

        def database_down(_key: str) -> None:
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("connection refused"))

        keys = client.app.state.gateway.keys  # type: ignore[attr-defined]
        monkeypatch.setattr(keys, "_lookup", database_down)
        answer = client.post("/v1/track", json={"userId": "u", "event": "E2"})
        assert answer.status_code == 200, answer.text
        assert redis.Redis.from_url(isolated_redis_url).llen("sluice.ingest") == 2
        unknown = client.post(
            "/v1/track", json={"userId": "u", "event": "E3"}, auth=("sk_live_never_seen", "")
        )
        assert (unknown.status_code, unknown.json()["error"]) == (503, "database_unavailable")


@pytest.mark.parametrize("key", ["orderId", "order_id"])
def test_an_order_id_longer_than_the_database_holds_is_a_400(
    gateway: tuple[TestClient, str], key: str
) -> None:
    # An order id of 300 characters used to be queued, refused by the database, and its
    # order claimed for days by a message that was never stored.
    client, redis_url = gateway
    body = {"userId": "u", "event": "Order Completed", "properties": {key: "o" * 256}}
    answer = client.post("/v1/track", json=body)
    assert answer.status_code == 400, answer.text
    assert f"properties.{key} has 256 characters" in answer.json()["message"]
    assert_nothing_queued(redis_url)
    body["properties"] = {key: "o" * 255}
    assert client.post("/v1/track", json=body).status_code == 200
