"""CleverTap Bulletins: ``POST /1/targets/trigger.json`` (seed 002).

``X-CleverTap-Account-Id`` = workspace id, ``X-CleverTap-Passcode`` = write key. Body
``{business_event, name, properties, c-by, when}``; the business event must be defined, with
its required properties. Keys are at most 120 characters, values strings of at most 512
bytes. Errors are CleverTap's: ``{"status": "fail", "error": …, "code": 400}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Engine

from sluice.actions import ACTIONS
from sluice.gateway.blocking import from_database
from sluice.gateway.dependencies import (
    DatabaseDep,
    DefinitionsDep,
    EventQueueDep,
    OutcomesDep,
    SettingsDep,
    WriteKeysDep,
)
from sluice.gateway.responses import JsonResponse
from sluice.gateway.security import CLEVERTAP_ACCOUNT, CLEVERTAP_PASSCODE, requires
from sluice.gateway.vendors.common import (
    VendorError,
    body_bytes,
    json_body,
    make_event,
    queue_built_event,
    vendor_shaped,
    workspace_for_key,
)
from sluice.gateway.vendors.common import (
    definition as vendor_definition,
)
from sluice.gateway.vendors.openapi import CLEVERTAP_BODY, CLEVERTAP_ERRORS
from sluice.producer.events import Event, as_utc, utc_now
from sluice.store.automations import active_automations, too_old_to_fire
from sluice.store.definitions import MAX_CLEVERTAP_KEY_CHARS

router = APIRouter(
    prefix="/compat/clevertap",
    tags=["clevertap"],
    dependencies=requires(CLEVERTAP_ACCOUNT, CLEVERTAP_PASSCODE),
)

LIMIT_BYTES = 32 * 1024
MAX_VALUE_BYTES = 512


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> VendorError:
    return VendorError(status, {"status": "fail", "error": message, "code": status}, headers)


def _when(value: Any, received_at: datetime) -> datetime:
    if value == "now":
        return received_at
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError, OSError):
        pass
    shown = "null" if value is None else value
    raise fail(400, f'"when" has an incorrect value - {shown}')


# A wrong account and a wrong passcode get the same answer (CleverTap's words).
INVALID_CREDENTIALS = "Invalid Credentials"


@router.post(
    "/1/targets/trigger.json",
    openapi_extra=CLEVERTAP_BODY,
    responses=CLEVERTAP_ERRORS,
    summary="CleverTap: raise bulletins for a business event",
)
async def trigger(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    keys: WriteKeysDep,
    definitions: DefinitionsDep,
    queue: EventQueueDep,
    outcomes: OutcomesDep,
) -> JsonResponse:
    account = request.headers.get("x-clevertap-account-id")
    passcode = request.headers.get("x-clevertap-passcode")
    workspace_id = await workspace_for_key(keys, passcode, fail, refused=INVALID_CREDENTIALS)
    if account != workspace_id:
        raise fail(401, INVALID_CREDENTIALS)
    body = json_body(await body_bytes(request, LIMIT_BYTES, fail), fail)
    if not isinstance(body, dict):
        raise fail(400, "the body must be a JSON object")
    business_event = body.get("business_event")
    if not isinstance(business_event, str) or not business_event:
        raise fail(400, "Business Event Not Found")
    definition = await vendor_definition(
        definitions, fail, workspace_id, "clevertap", name=business_event
    )
    if definition is None:
        raise fail(400, "Business Event Not Found")
    received_at = utc_now()
    when = _when(body.get("when"), received_at)
    for field in ("name", "c-by"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise fail(400, f'"{field}" is required')
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise fail(400, '"properties" must be an object')
    for key, value in properties.items():
        if len(key) > MAX_CLEVERTAP_KEY_CHARS:
            raise fail(
                400, f"Property key {key[:40]}… is over {MAX_CLEVERTAP_KEY_CHARS} characters"
            )
        if not isinstance(value, str):
            raise fail(400, f"Property{key}must be a string")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise fail(400, f"Property{key}is over {MAX_VALUE_BYTES} bytes")
    for key in definition.required:
        if key not in properties:
            raise fail(400, f"Property{key}missing")
    fields = {
        "workspace_id": workspace_id,
        "kind": "custom",
        "name": business_event,
        "properties": properties,
        "timestamp": when,
        "received_at": received_at,
        "context": {"bulletin": {"name": body["name"], "c-by": body["c-by"]}},
        "source": "clevertap",
    }
    event = make_event(fields, fail)
    targets = await vendor_shaped(
        fail, bulletin_targets(database, event, settings.trigger_max_age_s)
    )
    reply = {"status": "success", "targets": targets}
    return await queue_built_event(request, queue, outcomes, fail, event, reply)


async def bulletin_targets(database: Engine, event: Event, max_age_s: int) -> int:
    """How many bulletin automations this event will raise (CleverTap's ``targets``):
    the active ones on its name whose filters match, none for a stale event. Read
    fresh each time, so a bulletin added a moment ago counts at once."""
    if too_old_to_fire(event, utc_now(), max_age_s):
        return 0

    def count() -> int:
        with database.connect() as conn:
            found = active_automations(conn, [event.workspace_id], [event.name])
        return sum(1 for a in found if ACTIONS[a.action].counted and a.matches(event))

    return await from_database(count)
