"""The user/event API: ``POST /v1/event/`` (seed 001).

``Authorization: Bearer <write key>``; body ``{"user": {"email" | "_id"}, "event": {<type>:
{…}}}`` with one type of ``update``, ``login``, ``generic`` (``{"generic": {"event_name", …}}``),
``confirmation`` (``orderId``) or ``email_open``. An update's user must exist (decided by the
worker after the grace period). Errors: ``{"errors": [{"message", "description"}]}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sluice.gateway.dependencies import EventQueueDep, OutcomesDep, WriteKeysDep
from sluice.gateway.responses import JsonResponse
from sluice.gateway.security import WRITE_KEY_BEARER, requires
from sluice.gateway.vendors.common import (
    VendorError,
    body_bytes,
    json_body,
    queue_event,
    workspace_for_key,
)
from sluice.gateway.vendors.openapi import USER_EVENT_BODY, USER_EVENT_ERRORS
from sluice.producer.events import EventKind, utc_now

router = APIRouter(
    prefix="/compat/user-event", tags=["user-event"], dependencies=requires(WRITE_KEY_BEARER)
)

LIMIT_BYTES = 32 * 1024
KINDS = {
    "update": EventKind.UPDATE,
    "login": EventKind.LOGIN,
    "generic": EventKind.CUSTOM,
    "confirmation": EventKind.CONFIRMATION,
    "email_open": EventKind.EMAIL_OPEN,
}


def fail(
    status: int, message: str, headers: dict[str, str] | None = None, description: str | None = None
) -> VendorError:
    return VendorError(
        status, {"errors": [{"message": message, "description": description or message}]}, headers
    )


def _bearer(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@router.post(
    "/v1/event/",
    openapi_extra=USER_EVENT_BODY,
    responses=USER_EVENT_ERRORS,
    summary="user/event API: record an event for a user",
)
async def create_event(
    request: Request, keys: WriteKeysDep, queue: EventQueueDep, outcomes: OutcomesDep
) -> JsonResponse:
    workspace_id = await workspace_for_key(
        keys, _bearer(request.headers.get("authorization")), fail
    )
    body = json_body(await body_bytes(request, LIMIT_BYTES, fail), fail)
    if not isinstance(body, dict):
        raise fail(400, "Malformed request", description="Send a JSON object with user and event")
    user = body.get("user")
    email = user.get("email") if isinstance(user, dict) else None
    user_id = _text(user.get("_id")) if isinstance(user, dict) else None
    if not (isinstance(email, str) and email.strip()):
        email = None
    if email is None and user_id is None:
        raise fail(
            400,
            "Missing user information",
            description="Please send user with email (a string) or _id",
        )
    event = body.get("event")
    if not isinstance(event, dict) or len(event) != 1 or next(iter(event)) not in KINDS:
        raise fail(
            400,
            "Missing event information",
            description="Please send event information along with user",
        )
    ((event_type, data),) = event.items()
    if not isinstance(data, dict):
        raise fail(400, f"Invalid {event_type} event", description="Event data must be an object")
    fields: dict[str, Any] = {
        "workspace_id": workspace_id,
        "kind": KINDS[event_type],
        "received_at": utc_now(),
        "email": email,
        "user_id": user_id,
        "source": "user-event",
    }
    if event_type in ("update", "login"):
        fields["traits"] = data
    elif event_type == "generic":
        generic = data.get("generic")
        if not isinstance(generic, dict) or not isinstance(generic.get("event_name"), str):
            raise fail(
                400,
                "Invalid generic event",
                description='Send {"generic": {"generic": {"event_name": …}}}',
            )
        fields["name"] = generic["event_name"]
        fields["properties"] = {k: v for k, v in generic.items() if k != "event_name"}
    else:
        fields["properties"] = data
    reply = {
        "results": {
            "message": "Event created",
            "email": "Event was created for the specified user",
        }
    }
    return await queue_event(request, queue, outcomes, fail, fields, reply)


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None
