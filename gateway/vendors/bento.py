"""Bento: ``POST /api/v1/batch/events?site_uuid=`` (seed 003).

``site_uuid`` = workspace id, HTTP Basic user = write key. Body ``{"events": [1..1000 {type,
email, fields (flat), details (nested)}]}``. Events create their users. Partial success: the
valid events are queued, and the answer ``{"results": N, "failed": M}`` also lists each
failure's index and reason.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from sluice.gateway.auth import basic_auth_user
from sluice.gateway.dependencies import EventQueueDep, OutcomesDep, WriteKeysDep
from sluice.gateway.errors import ApiError
from sluice.gateway.responses import JsonResponse
from sluice.gateway.security import WRITE_KEY_BASIC, requires
from sluice.gateway.vendors.common import (
    VendorError,
    answer,
    body_bytes,
    json_body,
    vendor_shaped,
    workspace_for_key,
)
from sluice.gateway.vendors.openapi import BENTO_BODY, BENTO_ERRORS
from sluice.producer.envelope import describe_validation_error
from sluice.producer.events import Event, EventKind, order_under_unique_key, utc_now

router = APIRouter(prefix="/compat/bento", tags=["bento"], dependencies=requires(WRITE_KEY_BASIC))

LIMIT_BYTES = 5 * 1024 * 1024
MAX_EVENTS = 1000
OFF_LOOP_EVENTS = 64  # larger batches are validated on a worker thread
PURCHASE = "$purchase"


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> VendorError:
    return VendorError(status, {"error": message}, headers)


def _problem(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return "an event must be an object"
    if not isinstance(raw.get("type"), str) or not raw["type"]:
        return "type is required"
    if not isinstance(raw.get("email"), str) or not raw["email"].strip():
        return "email is required"
    fields = raw.get("fields", {})
    if not isinstance(fields, dict):
        return "fields must be an object"
    nested = [key for key, value in fields.items() if isinstance(value, dict | list)]
    if nested:
        return f"fields must not be nested: {', '.join(sorted(nested))}"
    if not isinstance(raw.get("details", {}), dict):
        return "details must be an object"
    return None


@router.post(
    "/api/v1/batch/events",
    openapi_extra=BENTO_BODY,
    responses=BENTO_ERRORS,
    summary="Bento: record 1 to 1000 events",
)
async def batch_events(
    request: Request,
    keys: WriteKeysDep,
    queue: EventQueueDep,
    outcomes: OutcomesDep,
    site_uuid: str | None = None,
) -> JsonResponse:
    try:
        write_key = basic_auth_user(request.headers.get("authorization"))
    except ApiError as exc:
        raise fail(401, exc.message) from exc
    workspace_id = await workspace_for_key(keys, write_key, fail)
    if site_uuid != workspace_id:
        raise fail(401, "site_uuid does not match the key")
    body = json_body(await body_bytes(request, LIMIT_BYTES, fail), fail)
    raw_events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_EVENTS:
        raise fail(400, f"events must be a list of 1 to {MAX_EVENTS} events")
    # The queue's depth and the rate limit come before any validation, on the raw count.
    await vendor_shaped(fail, queue.admit(workspace_id, len(raw_events)))
    if len(raw_events) > OFF_LOOP_EVENTS:
        queued, failures = await run_in_threadpool(_validated, raw_events, workspace_id)
    else:
        queued, failures = _validated(raw_events, workspace_id)
    message_ids = await vendor_shaped(fail, queue.send(queued)) if queued else []
    return await answer(
        request,
        outcomes,
        workspace_id,
        message_ids,
        {
            "results": len(queued),
            "failed": len(failures),
            "failures": failures,
            "message_ids": message_ids,
        },
    )


def _validated(
    raw_events: list[Any], workspace_id: str
) -> tuple[list[Event], list[dict[str, Any]]]:
    """The valid events, and each failure's index and reason. CPU only: large batches run
    it on a worker thread, so that the event loop keeps answering meanwhile."""
    received_at = utc_now()
    queued: list[Event] = []
    failures: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        problem = _problem(raw)
        if problem is None:
            try:
                queued.append(_to_event(raw, workspace_id, received_at))
                continue
            except ValidationError as exc:
                problem = describe_validation_error(exc)
        failures.append({"index": index, "reason": problem})
    return queued, failures


def _to_event(raw: dict[str, Any], workspace_id: str, received_at: Any) -> Event:
    """Bento's events create their users, and a purchase names its order in
    ``details.unique.key``."""
    kind = EventKind.CONFIRMATION if raw["type"] == PURCHASE else EventKind.CUSTOM
    details = raw.get("details") or {}
    return Event.model_validate(
        {
            "workspace_id": workspace_id,
            "kind": kind,
            "name": raw["type"],
            "email": raw["email"],
            "traits": raw.get("fields") or {},
            "properties": {"details": details} if details else {},
            "received_at": received_at,
            "source": "bento",
            "order_id": order_under_unique_key(details),
            "creates_user": True,
        }
    )
