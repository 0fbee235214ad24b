"""One valid request per authenticated route of the gateway, sent with a given write key:
for checking that every route authenticates alike (each in its own vendor's style)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient

# A real gateway's client, or one of an app in process.
Client = httpx.Client | TestClient
Route = Callable[[Client, str], httpx.Response]


def routes(workspace_id: str, bunce_event_id: str, message_id: str) -> dict[str, Route]:
    """One valid request per authenticated route, sent with a given write key."""
    return {
        "native track": lambda http, key: http.post(
            "/v1/track", auth=(key, ""), json={"userId": "u1", "event": "Signed Up"}
        ),
        "native event read": lambda http, key: http.get(f"/v1/events/{message_id}", auth=(key, "")),
        "bunce": lambda http, key: http.post(
            "/compat/bunce/v1/events/trigger",
            headers={"X-Authorization": key},
            json={"event_id": bunce_event_id, "payload": {"email": "a@x.io", "plan": "pro"}},
        ),
        "clevertap": lambda http, key: http.post(
            "/compat/clevertap/1/targets/trigger.json",
            headers={"X-CleverTap-Account-Id": workspace_id, "X-CleverTap-Passcode": key},
            json={
                "business_event": "Program Released",
                "name": "Ep 12",
                "c-by": "me",
                "when": "now",
                "properties": {"program_id": "7"},
            },
        ),
        "bento": lambda http, key: http.post(
            f"/compat/bento/api/v1/batch/events?site_uuid={workspace_id}",
            auth=(key, ""),
            json={"events": [{"type": "$viewed", "email": "b@x.io"}]},
        ),
        "platformly": lambda http, key: http.post(
            "/compat/platformly/",
            data={
                "api_key": key,
                "action": "contact_event_fire",
                "value": '{"event": 3, "email": "c@x.io"}',
            },
        ),
        "user/event": lambda http, key: http.post(
            "/compat/user-event/v1/event/",
            headers={"Authorization": f"Bearer {key}"},
            json={"user": {"_id": "ue-1"}, "event": {"login": {"plan": "pro"}}},
        ),
    }
