"""The native API, Segment-compatible: official Segment/RudderStack SDKs work unchanged.

Auth: the workspace write key as the HTTP Basic user name. Limits (Segment's): 32 KB per
event, 500 KB per batch request; larger bodies get 413 and nothing is queued.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from sluice.gateway.blocking import from_database
from sluice.gateway.body import encoded_size, parse_json_object, read_limited
from sluice.gateway.dependencies import (
    BasicAuthWorkspace,
    EventQueueDep,
    OutcomesDep,
    RateLimitsDep,
)
from sluice.gateway.errors import ApiError, invalid_fields, too_large
from sluice.gateway.intake import EventQueue
from sluice.gateway.outcomes import OutcomeReader
from sluice.gateway.responses import JsonResponse
from sluice.gateway.security import WRITE_KEY_BASIC, requires
from sluice.gateway.segment import (
    BATCH_LIMIT_BYTES,
    EVENT_LIMIT_BYTES,
    CallType,
    SegmentBatch,
    SegmentCall,
    batch_call_type,
    to_event,
)
from sluice.gateway.vendors.openapi import json_body
from sluice.producer.events import MAX_MESSAGE_ID_CHARS, Event, utc_now
from sluice.rules import Status
from sluice.store.outcomes import outcome_of
from sluice.store.views import triggers_of

router = APIRouter(tags=["native"], dependencies=requires(WRITE_KEY_BASIC))

# A batch of more calls than this is validated on a worker thread, not on the event loop
# (a call takes some tens of microseconds: 64 of them, a few milliseconds).
OFF_LOOP_CALLS = 64


class Queued(BaseModel):
    success: bool = True
    message_id: str
    status: str = Field(default="queued", description="the verdict, with Prefer: wait=N")
    reason: str | None = None
    detail: str | None = None


class BatchItem(BaseModel):
    """What happened to one call of a batch, by its index."""

    index: int
    status: Literal["queued", "accepted", "discarded", "rejected"]
    message_id: str | None = None
    reason: str | None = None
    detail: str | None = None
    error: str | None = None
    message: str | None = None
    field: str | None = None


class BatchQueued(BaseModel):
    success: bool = True
    message_ids: list[str] = Field(description="the queued calls' message ids, in order")
    results: list[BatchItem] = Field(description="one entry per call of the batch")


class ErrorBody(BaseModel):
    success: bool = False
    error: str
    message: str
    field: str | None = None


class Trigger(BaseModel):
    trigger_id: str = Field(description="also the webhook-id header of its deliveries")
    automation_id: str
    on: str
    action: Literal["webhook", "task", "bulletin"]
    target: str | None = None
    status: Literal["pending", "retrying", "delivered", "failed", "cancelled"]
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class EventOutcome(BaseModel):
    """``sluice.store.outcomes.EventOutcome`` as the API shows it (same fields, in order),
    with the triggers the event fired; without ``raw``, the stored copy of a refused
    event, which may hold personal data a write key (shipped in apps and pages) must not
    read back (docs/api.md)."""

    message_id: str
    status: Status
    reason: str | None = None
    detail: str | None = None
    kind: str | None = None
    name: str | None = None
    decided_at: datetime | None = None
    group_id: str | None = Field(default=None, description="a Segment group call's groupId")
    previous_id: str | None = Field(default=None, description="a Segment alias call's previousId")
    triggers: list[Trigger] = Field(
        default_factory=list, description="the automations this event fired, and their state"
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Malformed JSON or an invalid event; nothing was queued.",
        401: "Missing or unknown write key.",
        413: "Event over 32 KB or batch over 500 KB; nothing was queued.",
        429: "The queue is full, or the workspace is past its rate limit; nothing was "
        "queued. Retry after `Retry-After`.",
        503: "The queue is unavailable; nothing was queued. Retry after `Retry-After`.",
    }.items()
}


_CALL_SCHEMA = SegmentCall.model_json_schema()


def _call_body(call_type: str) -> dict[str, Any]:
    return json_body(_CALL_SCHEMA, f"A Segment {call_type} call.")


async def _single(
    request: Request,
    call_type: CallType,
    workspace_id: str,
    queue: EventQueue,
    outcomes: OutcomeReader,
) -> JsonResponse:
    body = parse_json_object(await read_limited(request, EVENT_LIMIT_BYTES))
    event = to_event(body, call_type, workspace_id=workspace_id, received_at=utc_now())
    (message_id,) = await queue.publish([event])
    found, headers = await outcomes.outcomes_if_asked(request, workspace_id, [message_id])
    answer = Queued(message_id=message_id, **(found[message_id] if found else {}))
    return JsonResponse(answer.model_dump(), headers=headers)


@router.post(
    "/v1/track",
    response_model=Queued,
    responses=ERRORS,
    openapi_extra=_call_body("track"),
    summary="Record an action a user performed",
)
async def track(
    request: Request,
    workspace_id: BasicAuthWorkspace,
    queue: EventQueueDep,
    outcomes: OutcomesDep,
) -> JsonResponse:
    return await _single(request, "track", workspace_id, queue, outcomes)


@router.post(
    "/v1/identify",
    response_model=Queued,
    responses=ERRORS,
    openapi_extra=_call_body("identify"),
    summary="Identify a user (a login: creates the contact, sets traits)",
)
async def identify(
    request: Request,
    workspace_id: BasicAuthWorkspace,
    queue: EventQueueDep,
    outcomes: OutcomesDep,
) -> JsonResponse:
    return await _single(request, "identify", workspace_id, queue, outcomes)


@router.post(
    "/v1/update",
    response_model=Queued,
    responses=ERRORS,
    openapi_extra=_call_body("identify-shaped update"),
    summary="Update the traits of a user that must already exist",
)
async def update(
    request: Request,
    workspace_id: BasicAuthWorkspace,
    queue: EventQueueDep,
    outcomes: OutcomesDep,
) -> JsonResponse:
    return await _single(request, "update", workspace_id, queue, outcomes)


@router.post(
    "/v1/batch",
    response_model=BatchQueued,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["batch"],
                        "properties": {
                            "batch": {
                                "type": "array",
                                "minItems": 1,
                                "items": SegmentCall.model_json_schema(),
                            },
                            "sentAt": {"type": "string", "format": "date-time"},
                        },
                    }
                }
            },
        }
    },
    summary="Several calls in one request (what the SDKs send)",
)
async def batch(
    request: Request,
    workspace_id: BasicAuthWorkspace,
    queue: EventQueueDep,
    outcomes: OutcomesDep,
) -> JsonResponse:
    body = parse_json_object(await read_limited(request, BATCH_LIMIT_BYTES))
    calls = body.get("batch")
    if isinstance(calls, list) and calls:
        # The cap (413), the queue's depth and the rate limit come before any validation,
        # on the raw count: a batch past them costs its JSON parse, nothing more.
        await queue.admit(workspace_id, len(calls))
    if isinstance(calls, list) and len(calls) > OFF_LOOP_CALLS:
        events, results = await run_in_threadpool(_validated, body, workspace_id)
    else:
        events, results = _validated(body, workspace_id)
    if not events:  # nothing to queue: the request fails, with each call's reason
        first = results[0]
        status = 413 if all(r.error == "too_large" for r in results) else 400
        return JsonResponse(
            {
                "success": False,
                "error": first.error,
                "message": f"no call of the batch was queued; first: {first.message}",
                "field": first.field,
                "results": [r.model_dump(exclude_none=True) for r in results],
            },
            status_code=status,
        )
    message_ids = await queue.send(events)
    found, headers = await outcomes.outcomes_if_asked(request, workspace_id, message_ids)
    if found:
        results = [r.model_copy(update=found[r.message_id]) if r.message_id else r for r in results]
    answer = BatchQueued(message_ids=message_ids, results=results)
    return JsonResponse(answer.model_dump(exclude_none=True), headers=headers)


def _validated(body: dict[str, Any], workspace_id: str) -> tuple[list[Event], list[BatchItem]]:
    """A batch's valid calls as events, and what happened to each call by its index; a 400
    ``ApiError`` when the envelope itself is invalid. CPU only: large batches run it on a
    worker thread, so that the event loop keeps answering meanwhile."""
    try:
        envelope = SegmentBatch.model_validate(body)
    except ValidationError as exc:
        raise invalid_fields(exc) from exc
    received_at = utc_now()
    events: list[Event] = []
    results: list[BatchItem] = []
    for index, raw in enumerate(envelope.batch):
        try:
            call_type = batch_call_type(raw, index)
            if encoded_size(raw) > EVENT_LIMIT_BYTES:
                raise too_large(f"batch.{index} is larger than {EVENT_LIMIT_BYTES} bytes")
            event = to_event(
                raw,
                call_type,
                workspace_id=workspace_id,
                received_at=received_at,
                sent_at=envelope.sentAt,
                field_prefix=f"batch.{index}.",
            )
        except ApiError as exc:
            results.append(
                BatchItem(
                    index=index,
                    status="rejected",
                    error=exc.code,
                    message=exc.message,
                    field=exc.field,
                )
            )
            continue
        results.append(BatchItem(index=index, status="queued", message_id=event.message_id))
        events.append(event)
    return events, results


@router.get(
    "/v1/events/{message_id}",
    response_model=EventOutcome,
    responses={
        401: ERRORS[401],
        404: {"model": ErrorBody, "description": "No such event here."},
        429: {"model": ErrorBody, "description": "The workspace is past its rate limit."},
    },
    summary="The outcome of an event: queued, accepted, discarded or rejected",
)
async def event_outcome(
    message_id: str,
    workspace_id: BasicAuthWorkspace,
    limits: RateLimitsDep,
    outcomes: OutcomesDep,
) -> JsonResponse:
    await limits.charge(workspace_id, 1, reading=True)
    if "\x00" in message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
        # No event can have this id (and PostgreSQL cannot even compare text with a NUL).
        raise ApiError(404, "not_found", "no event with this message_id in this workspace")
    outcome = await from_database(outcome_of, outcomes.database, workspace_id, message_id)
    if outcome is None:
        if await run_in_threadpool(outcomes.is_pending, workspace_id, message_id):
            return JsonResponse(
                EventOutcome(message_id=message_id, status=Status.QUEUED).model_dump(mode="json")
            )
        # A worker stores the outcome before it clears the mark: one decided between the
        # two reads above is in the database now.
        outcome = await from_database(outcome_of, outcomes.database, workspace_id, message_id)
    if outcome is None:
        raise ApiError(404, "not_found", "no event with this message_id in this workspace")
    fired = await from_database(triggers_of, outcomes.database, workspace_id, message_id)
    result = EventOutcome(
        **outcome.fields(), triggers=[Trigger.model_validate(view) for view in fired]
    )
    return JsonResponse(result.model_dump(mode="json"))
