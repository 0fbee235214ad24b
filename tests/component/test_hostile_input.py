"""What a hostile or careless client sends, answered in the route's own shape and changing
nothing: text the database refuses (a NUL) is a 400, never a database outage; a gzip body
without its trailer or with data after it, invalid percent-encoded UTF-8 and numbers that
are not finite are refused; CleverTap answers a wrong account and a wrong passcode alike;
a write key does not read back the stored copy of a refused event; and the probes and the
metrics name an error's class but never its message (hosts and ports)."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from sluice.cli.embedded_redis import free_port
from sluice.gateway import create_app
from sluice.gateway.blocking import from_database
from sluice.gateway.errors import ApiError
from sluice.producer.events import Event
from sluice.settings import Settings
from sluice.store.definitions import add_definition
from sluice.store.schema import outcomes
from sluice.store.workspaces import create_workspace
from tests.services import keys_besides_metrics


class Gateway:
    def __init__(self, client: TestClient, redis_url: str, workspace_id: str, key: str) -> None:
        self.client, self.redis_url = client, redis_url
        self.workspace_id, self.key = workspace_id, key

    def nothing_queued(self) -> bool:
        return keys_besides_metrics(redis.Redis.from_url(self.redis_url)) == 0

    def clevertap(self, body: dict[str, Any], passcode: str | None = None) -> Any:
        return self.client.post(
            "/compat/clevertap/1/targets/trigger.json",
            headers={
                "X-CleverTap-Account-Id": self.workspace_id,
                "X-CleverTap-Passcode": passcode or self.key,
            },
            json=body,
        )

    def platformly(self, form: bytes) -> Any:
        return self.client.post(
            "/compat/platformly/",
            content=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


@pytest.fixture
def gateway(isolated_redis_url: str, database_url: str, engine: Engine) -> Iterator[Gateway]:
    workspace = create_workspace(engine, "hostile")
    add_definition(engine, workspace.workspace_id, "clevertap", "Program Released")
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        yield Gateway(client, isolated_redis_url, workspace.workspace_id, workspace.write_key)


RELEASED = {"name": "Ep 12", "c-by": "me", "when": "now", "properties": {"program_id": "7"}}


# --- text the database refuses -----------------------------------------------------------


def test_a_nul_in_a_clevertap_business_event_is_a_400_not_a_database_outage(
    gateway: Gateway,
) -> None:
    answer = gateway.clevertap({**RELEASED, "business_event": "Program\u0000Released"})
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"status": "fail", "error": "Business Event Not Found", "code": 400}
    assert "retry-after" not in answer.headers
    assert gateway.nothing_queued()


def test_a_value_the_database_refuses_is_a_400_and_an_outage_is_a_503(
    engine: Engine, database_url: str
) -> None:
    import asyncio

    from sluice.store.engine import make_engine

    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite stores a NUL and any integer: PostgreSQL refuses them")

    def cast(value: str) -> object:
        with engine.connect() as conn:
            return conn.execute(text("select cast(:v as integer)"), {"v": value}).scalar()

    for refused in ("a\u0000b", "99999999999999"):
        with pytest.raises(ApiError) as caught:
            asyncio.run(from_database(cast, refused))
        assert caught.value.status_code == 400, refused
        assert "Retry-After" not in caught.value.headers
    nobody = engine.url.set(host="127.0.0.1", port=free_port(), query={"connect_timeout": "1"})
    down = make_engine(nobody.render_as_string(hide_password=False))

    def ping() -> object:
        with down.connect() as conn:
            return conn.execute(text("select 1")).scalar()

    with pytest.raises(ApiError) as caught:
        asyncio.run(from_database(ping))
    assert caught.value.status_code == 503
    assert caught.value.headers["Retry-After"] == "5"
    down.dispose()


# --- bodies and encodings ----------------------------------------------------------------


def test_a_gzip_body_without_its_trailer_or_with_data_after_it_is_a_400(
    gateway: Gateway,
) -> None:
    whole = gzip.compress(b'{"userId": "u1", "event": "Signed Up"}')
    for body in (whole[:-8], whole + b"junk", whole + whole):
        answer = gateway.client.post(
            "/v1/track",
            content=body,
            auth=(gateway.key, ""),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_body"
    assert gateway.nothing_queued()
    answer = gateway.client.post(
        "/v1/track",
        content=whole,
        auth=(gateway.key, ""),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 200, answer.text


def test_invalid_percent_encoded_utf8_in_a_platformly_form_is_a_400(gateway: Gateway) -> None:
    form = (
        f"api_key={gateway.key}&action=contact_event_fire&value="
        "%7B%22event%22%3A%22%FF%FE%22%2C%22email%22%3A%22c%40x.io%22%7D"
    )
    answer = gateway.platformly(form.encode())
    assert answer.status_code == 400, answer.text
    assert "malformed form body" in answer.json()["message"]
    assert gateway.nothing_queued()


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_is_refused_not_stored_as_null(number: float) -> None:
    with pytest.raises(ValueError, match="not finite"):
        Event(
            workspace_id="ws",
            kind="custom",
            name="Measured",
            user_id="u1",
            properties={"reading": [1.0, {"value": number}]},
        )
    # null itself, and finite numbers, are still what they are
    Event(
        workspace_id="ws", kind="custom", name="M", user_id="u1", properties={"v": None, "w": 1.5}
    )


# --- answers that tell too much ------------------------------------------------------------


def test_clevertap_answers_a_wrong_passcode_as_it_answers_a_wrong_account(
    gateway: Gateway,
) -> None:
    wrong_key = gateway.clevertap({**RELEASED, "business_event": "Program Released"}, "sk_nope")
    wrong_account = gateway.client.post(
        "/compat/clevertap/1/targets/trigger.json",
        headers={"X-CleverTap-Account-Id": "ws_other", "X-CleverTap-Passcode": gateway.key},
        json={**RELEASED, "business_event": "Program Released"},
    )
    assert wrong_key.status_code == wrong_account.status_code == 401
    assert wrong_key.json() == wrong_account.json()


def test_a_write_key_does_not_read_the_stored_copy_of_a_refused_event(
    gateway: Gateway, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(
            outcomes.insert().values(
                workspace_id=gateway.workspace_id,
                message_id="refused-1",
                status="rejected",
                reason="invalid",
                detail="timestamp: not a time",
                raw='{"email": "someone@example.com", "timestamp": "soon"}',
                batch_id="b-1",
                decided_at=datetime.now(UTC),
            )
        )
    answer = gateway.client.get("/v1/events/refused-1", auth=(gateway.key, ""))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "rejected"
    assert answer.json()["detail"] == "timestamp: not a time"
    assert "raw" not in answer.json() and "someone@example.com" not in answer.text


def test_readyz_and_metrics_name_the_error_but_not_the_host_while_redis_is_down(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    dead = f"redis://127.0.0.1:{port}/0"
    settings = Settings(redis_url=dead, database_url=database_url, publish_timeout_s=0.5)
    with caplog.at_level(logging.INFO), TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        again = client.get("/readyz")
        scraped = client.get("/metrics")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["redis"] == "unavailable: ConnectionError", checks
    assert checks["database"] == "ok"
    for answer in (ready, again, scraped):
        assert str(port) not in answer.text and "127.0.0.1" not in answer.text, answer.text
    assert scraped.status_code == 503
    assert scraped.text.startswith("metrics unavailable: ConnectionError")
    # The operator finds the detail in the log, once while it lasts.
    logged = [r.getMessage() for r in caplog.records if r.name == "sluice.ops.health"]
    assert sum(f":{port}" in line and line.startswith("readiness: redis") for line in logged) == 1
