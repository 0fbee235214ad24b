"""Every route is described by the OpenAPI document, and no body, however broken, makes
the gateway fail (5xx) or queue anything it refused."""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from sqlalchemy import Engine

from sluice.settings import Settings
from sluice.store.workspaces import create_workspace
from tests.services import keys_besides_metrics


@pytest.fixture
def app_and_key(
    isolated_redis_url: str, database_url: str, engine: Engine
) -> Iterator[tuple[TestClient, str, str, str]]:
    from sluice.gateway import create_app

    workspace = create_workspace(engine, "contract")
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        yield client, isolated_redis_url, workspace.workspace_id, workspace.write_key


def test_the_openapi_document_is_valid_and_describes_every_route(
    app_and_key: tuple[TestClient, str, str, str],
) -> None:
    client = app_and_key[0]
    document = client.get("/openapi.json").json()
    validate(document)
    expected = {
        ("post", "/v1/track"),
        ("post", "/v1/identify"),
        ("post", "/v1/update"),
        ("post", "/v1/batch"),
        ("get", "/v1/events/{message_id}"),
        ("get", "/healthz"),
        ("get", "/livez"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/compat/bunce/v1/events/trigger"),
        ("post", "/compat/user-event/v1/event/"),
        ("post", "/compat/clevertap/1/targets/trigger.json"),
        ("post", "/compat/bento/api/v1/batch/events"),
        ("post", "/compat/platformly/"),
    }
    admin = {
        ("post", "/admin/v1/workspaces"),
        ("get", "/admin/v1/workspaces"),
        ("get", "/admin/v1/workspaces/{workspace_id}"),
        ("patch", "/admin/v1/workspaces/{workspace_id}"),
        ("post", "/admin/v1/workspaces/{workspace_id}/write-key/rotate"),
        ("get", "/admin/v1/audit"),
        ("get", "/admin/v1/workspaces/{workspace_id}/definitions"),
        ("post", "/admin/v1/workspaces/{workspace_id}/definitions"),
        ("get", "/admin/v1/workspaces/{workspace_id}/definitions/{definition_id}"),
        ("delete", "/admin/v1/workspaces/{workspace_id}/definitions/{definition_id}"),
        ("get", "/admin/v1/workspaces/{workspace_id}/automations"),
        ("post", "/admin/v1/workspaces/{workspace_id}/automations"),
        ("get", "/admin/v1/workspaces/{workspace_id}/automations/{automation_id}"),
        ("patch", "/admin/v1/workspaces/{workspace_id}/automations/{automation_id}"),
        ("delete", "/admin/v1/workspaces/{workspace_id}/automations/{automation_id}"),
        ("post", "/admin/v1/workspaces/{workspace_id}/automations/{automation_id}/secret/rotate"),
        ("get", "/admin/v1/workspaces/{workspace_id}/events"),
        ("get", "/admin/v1/workspaces/{workspace_id}/events/{message_id}"),
        ("get", "/admin/v1/workspaces/{workspace_id}/automations/{automation_id}/deliveries"),
        ("post", "/admin/v1/workspaces/{workspace_id}/triggers/{trigger_id}/retry"),
        ("post", "/admin/v1/workspaces/{workspace_id}/erasures"),
        ("get", "/admin/v1/workspaces/{workspace_id}/export"),
        ("get", "/admin/v1/workspaces/{workspace_id}/stats"),
        ("get", "/admin/v1/dead-letters"),
        ("get", "/admin/v1/dead-letters/{dead_letter_id}"),
        ("post", "/admin/v1/dead-letters/{dead_letter_id}/replay"),
    }
    expected |= admin
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert described == expected
    schemes = document["components"]["securitySchemes"]
    # Every authenticated operation declares how (so /docs can authorise); Platform.ly
    # sends its key in the form body, which OpenAPI has no scheme for.
    open_ones = {
        ("get", "/healthz"),
        ("get", "/livez"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/compat/platformly/"),
    }
    for method, path in described - open_ones:
        operation = document["paths"][path][method]
        if path.startswith("/admin/"):
            assert operation.get("security") == [{"adminToken": []}], (method, path)
        else:
            (requirement,) = operation["security"]
            assert requirement and set(requirement) <= set(schemes) - {"adminToken"}, path
    assert schemes["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "sluice token create",
    }
    for method, path in described:
        operation = document["paths"][path][method]
        assert operation.get("summary"), f"{method} {path} has no summary"
        if method == "post" and (method, path) not in admin:
            assert operation["requestBody"]["content"], f"{path} has no request body"
            assert {"200", "400"} <= set(operation["responses"]), f"{path}: responses"


def _routes(ws: str, key: str) -> dict[str, tuple[str, dict[str, str], Any]]:
    basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return {
        "native track": ("/v1/track", {"Authorization": basic}, None),
        "native identify": ("/v1/identify", {"Authorization": basic}, None),
        "native update": ("/v1/update", {"Authorization": basic}, None),
        "native batch": ("/v1/batch", {"Authorization": basic}, None),
        "bunce": ("/compat/bunce/v1/events/trigger", {"X-Authorization": key}, None),
        "user/event": ("/compat/user-event/v1/event/", {"Authorization": f"Bearer {key}"}, None),
        "clevertap": (
            "/compat/clevertap/1/targets/trigger.json",
            {"X-CleverTap-Account-Id": ws, "X-CleverTap-Passcode": key},
            None,
        ),
        "bento": (
            f"/compat/bento/api/v1/batch/events?site_uuid={ws}",
            {"Authorization": basic},
            None,
        ),
        "platformly": (
            "/compat/platformly/",
            {"Content-Type": "application/x-www-form-urlencoded"},
            key,
        ),
    }


EDGE_VALUES = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-11-01T10:00:00Z",
        "now",
        1_000_000_000_000,
        10**15,
        2**62,
        -1,
        "",
        "\u0000",
        "[email protected]",
    ]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | EDGE_VALUES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "event",
                    "userId",
                    "anonymousId",
                    "batch",
                    "events",
                    "email",
                    "user",
                    "payload",
                    "event_id",
                    "business_event",
                    "properties",
                    "traits",
                    "when",
                    "fields",
                    "timestamp",
                    "messageId",
                    "x",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=200), json_values.map(lambda value: json.dumps(value).encode())
)


@pytest.mark.parametrize("route", list(_routes("ws", "key")))
def test_junk_bodies_never_fail_the_gateway_nor_queue_refused_input(
    app_and_key: tuple[TestClient, str, str, str], route: str
) -> None:
    client, redis_url, ws, key = app_and_key
    path, headers, form_key = _routes(ws, key)[route]
    queue = redis.Redis.from_url(redis_url)

    def as_form(body: bytes) -> bytes:  # Platform.ly takes a form: junk goes in `value`
        from urllib.parse import urlencode

        return urlencode(
            {
                "api_key": form_key,
                "action": "contact_event_fire",
                "value": body.decode("utf-8", "replace"),
            }
        ).encode()

    prepare: Callable[[bytes], bytes] = as_form if form_key else (lambda body: body)

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(body=bodies)
    def check(body: bytes) -> None:
        queue.flushdb()
        answer = client.post(
            path, content=prepare(body), headers={"Content-Type": "application/json", **headers}
        )
        assert answer.status_code < 500, answer.text
        answer.json()  # always JSON, in the route's own shape
        if answer.status_code >= 400:
            assert keys_besides_metrics(queue) == 0, (
                f"{answer.status_code} but something was queued"
            )

    check()


# --- schemathesis: cases generated from the OpenAPI document itself -------------------------


def test_requests_generated_from_the_openapi_document_never_fail_the_gateway(
    app_and_key: tuple[TestClient, str, str, str],
) -> None:
    """A bounded schemathesis run: every operation, its cases sent with the route's own
    credentials (so they reach the body handling); no 5xx, nothing queued when refused."""
    import schemathesis

    client, redis_url, ws, key = app_and_key
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    credentials = {path.split("?")[0]: headers for path, headers, _ in _routes(ws, key).values()}
    credentials["/v1/events/{message_id}"] = credentials["/v1/track"]
    queue = redis.Redis.from_url(redis_url)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 40
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            if case.path.startswith("/compat/bento"):
                case.query = {**(case.query or {}), "site_uuid": ws}
            queue.flushdb()
            response = case.call(headers={**(case.headers or {}), **credentials.get(case.path, {})})
            seen[(case.path, response.status_code)] += 1
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
            if response.status_code >= 400:
                assert keys_besides_metrics(queue) == 0, (
                    f"{case.method} {case.path} queued and refused"
                )

        check()
    if os.environ.get("SLUICE_SHOW_CONTRACT_STATS"):
        print(sorted(seen.items()))
