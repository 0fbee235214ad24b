"""Bunce: ``POST /v1/events/trigger`` (seed 000).

``X-Authorization: <write key>``; body ``{"event_id": <definition id>, "payload": {"email",
<declared params>}}``. Declared parameter types are checked: a ``timestamp`` value not in
``YYYY-MM-DDTHH:MM:SSZ`` is skipped (as Bunce documents), any other type error is a 422 naming
the field. Undeclared payload keys are skipped too; the answer lists what was skipped.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request

from sluice.gateway.dependencies import DefinitionsDep, EventQueueDep, OutcomesDep, WriteKeysDep
from sluice.gateway.responses import JsonResponse
from sluice.gateway.security import BUNCE_KEY, requires
from sluice.gateway.vendors.common import (
    VendorError,
    body_bytes,
    json_body,
    queue_event,
    workspace_for_key,
)
from sluice.gateway.vendors.common import (
    definition as vendor_definition,
)
from sluice.gateway.vendors.openapi import BUNCE_BODY, BUNCE_ERRORS
from sluice.producer.events import utc_now

router = APIRouter(prefix="/compat/bunce", tags=["bunce"], dependencies=requires(BUNCE_KEY))

LIMIT_BYTES = 32 * 1024
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def fail(
    status: int, message: str, headers: dict[str, str] | None = None, field: str | None = None
) -> VendorError:
    error: dict[str, Any] = {"code": status, "message": message}
    if field is not None:
        error["field"] = field
    return VendorError(status, {"success": False, "message": message, "error": error}, headers)


def _typed(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


@router.post(
    "/v1/events/trigger",
    openapi_extra=BUNCE_BODY,
    responses=BUNCE_ERRORS,
    summary="Bunce: trigger a defined event for a customer",
)
async def trigger(
    request: Request,
    keys: WriteKeysDep,
    definitions: DefinitionsDep,
    queue: EventQueueDep,
    outcomes: OutcomesDep,
) -> JsonResponse:
    workspace_id = await workspace_for_key(keys, request.headers.get("x-authorization"), fail)
    body = json_body(await body_bytes(request, LIMIT_BYTES, fail), fail)
    if not isinstance(body, dict):
        raise fail(422, "the body must be a JSON object with event_id and payload")
    event_id, payload = body.get("event_id"), body.get("payload")
    if not isinstance(event_id, str) or not UUID.match(event_id):
        raise fail(422, "event_id must be the uuid of a defined event", field="event_id")
    if not isinstance(payload, dict):
        raise fail(422, "payload must be an object with email", field="payload")
    email = payload.get("email")
    if not isinstance(email, str) or not EMAIL.match(email):
        raise fail(422, "payload.email must be a valid email address", field="payload.email")
    definition = await vendor_definition(
        definitions, fail, workspace_id, "bunce", definition_id=str(uuid.UUID(event_id))
    )
    if definition is None:
        raise fail(422, f"no event {event_id} in this workspace", field="event_id")
    properties: dict[str, Any] = {}
    skipped: list[str] = []
    for key, kind in definition.params.items():
        if key not in payload:
            raise fail(422, f"payload.{key} is missing ({kind})", field=f"payload.{key}")
        value = payload[key]
        if kind == "timestamp" and not (isinstance(value, str) and TIMESTAMP.match(value)):
            skipped.append(key)
        elif not _typed(kind, value):
            raise fail(422, f"payload.{key} must be a {kind}", field=f"payload.{key}")
        else:
            properties[key] = value
    skipped += sorted(set(payload) - set(definition.params) - {"email"})
    reply: dict[str, Any] = {
        "success": True,
        "data": True,
        "message": "Event successfully triggered",
    }
    if skipped:
        reply["skipped"] = skipped
    fields = {
        "workspace_id": workspace_id,
        "kind": "custom",
        "name": definition.name,
        "email": email,
        "properties": properties,
        "received_at": utc_now(),
        "context": {"skipped_params": skipped} if skipped else {},
        "source": "bunce",
    }
    return await queue_event(request, queue, outcomes, fail, fields, reply, invalid_status=422)
