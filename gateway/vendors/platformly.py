"""Platform.ly: form-encoded ``action=contact_event_fire`` (seed 004).

Form fields ``api_key`` (the write key), ``action`` and ``value``: a JSON string with
``contact_id`` and/or ``email``, ``event`` (the event id) and optional ``options`` (object,
or a JSON string of one). Answers ``{"status": "success", "message": "The action has been
processed"}``; errors ``{"status": "error", "message": …}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request

from sluice.gateway.dependencies import EventQueueDep, OutcomesDep, WriteKeysDep
from sluice.gateway.responses import JsonResponse
from sluice.gateway.vendors.common import (
    VendorError,
    body_bytes,
    queue_event,
    workspace_for_key,
)
from sluice.gateway.vendors.openapi import PLATFORMLY_BODY, PLATFORMLY_ERRORS
from sluice.producer.events import utc_now

router = APIRouter(prefix="/compat/platformly", tags=["platformly"])

LIMIT_BYTES = 32 * 1024
FORM = "application/x-www-form-urlencoded"


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> VendorError:
    return VendorError(status, {"status": "error", "message": message}, headers)


def _identifier(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
        isinstance(value, str) and bool(value.strip())
    )


def _json_object(text: Any, what: str) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = orjson.loads(text) if isinstance(text, str) else None
    except orjson.JSONDecodeError as exc:
        raise fail(400, f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise fail(400, f"{what} must be a JSON object")
    return value


@router.post("", include_in_schema=False)
@router.post(
    "/",
    openapi_extra=PLATFORMLY_BODY,
    responses=PLATFORMLY_ERRORS,
    summary="Platform.ly: contact_event_fire",
)
async def action(
    request: Request, keys: WriteKeysDep, queue: EventQueueDep, outcomes: OutcomesDep
) -> JsonResponse:
    if not request.headers.get("content-type", "").lower().startswith(FORM):
        raise fail(400, f"send a form-encoded body ({FORM}) with api_key, action and value")
    body = await body_bytes(request, LIMIT_BYTES, fail)
    try:
        form = {
            key: values[0]
            for key, values in parse_qs(
                body.decode(),
                keep_blank_values=True,
                strict_parsing=bool(body),
                errors="strict",  # invalid percent-encoded UTF-8 is refused, not replaced
            ).items()
        }
    except (UnicodeDecodeError, ValueError) as exc:
        raise fail(400, f"malformed form body: {exc}") from exc
    workspace_id = await workspace_for_key(keys, form.get("api_key"), fail)
    if form.get("action") != "contact_event_fire":
        raise fail(
            400, f"unknown action {form.get('action')!r}; this endpoint takes contact_event_fire"
        )
    value = _json_object(form.get("value"), "value")
    contact_id, email, event_id = value.get("contact_id"), value.get("email"), value.get("event")
    if not _identifier(contact_id):
        contact_id = None
    if not (isinstance(email, str) and email.strip()):
        email = None
    if contact_id is None and email is None:
        raise fail(400, "value needs contact_id (a number or string) or email (a string)")
    if not isinstance(event_id, int | str) or isinstance(event_id, bool) or event_id == "":
        raise fail(400, "value.event (the event id) is required")
    options = _json_object(value["options"], "options") if value.get("options") else {}
    fields = {
        "workspace_id": workspace_id,
        "kind": "custom",
        "name": str(event_id),
        "user_id": None if contact_id is None else str(contact_id),
        "email": email,
        "properties": {**options, "event_id": event_id},
        "received_at": utc_now(),
        "source": "platformly",
    }
    reply = {"status": "success", "message": "The action has been processed"}
    return await queue_event(request, queue, outcomes, fail, fields, reply)
