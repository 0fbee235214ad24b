"""The Segment call shape (what analytics-python, RudderStack and Segment's HTTP API send)
and its mapping to the canonical event.

Mapping: ``identify`` → ``login``; ``track`` → ``confirmation`` for "Order Completed",
``email_open`` for "Email Opened", ``custom`` otherwise; ``page``/``screen``/``group``/``alias``
→ ``custom`` named after the call type; the native ``/v1/update`` → ``update``. A ``group``
keeps its ``groupId`` (its ``traits`` describe the group, so they name no email of the
user), an ``alias`` its ``previousId``: Segment requires them, so does Sluice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sluice.gateway.errors import bad_request, invalid_fields
from sluice.producer.events import MAX_MESSAGE_ID_CHARS, Event, EventKind

EVENT_LIMIT_BYTES = 32 * 1024
BATCH_LIMIT_BYTES = 500 * 1024
SOURCE = "native"

CallType = Literal["track", "identify", "page", "screen", "group", "alias", "update"]
KIND_BY_TRACK_NAME = {
    "Order Completed": EventKind.CONFIRMATION,
    "Email Opened": EventKind.EMAIL_OPEN,
}
KIND_BY_CALL_TYPE = {"identify": EventKind.LOGIN, "update": EventKind.UPDATE}


class SegmentCall(BaseModel):
    """One Segment call. Unknown fields (``integrations``, ``version``, …) are ignored."""

    model_config = ConfigDict(extra="ignore")

    type: CallType | None = None
    messageId: str | None = Field(default=None, min_length=1, max_length=MAX_MESSAGE_ID_CHARS)
    userId: str | None = Field(default=None, max_length=255)
    anonymousId: str | None = Field(default=None, max_length=255)
    groupId: str | None = Field(default=None, max_length=255)
    previousId: str | None = Field(default=None, max_length=255)
    event: str | None = Field(default=None, max_length=200)
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None

    @field_validator("userId", "anonymousId", "groupId", "previousId", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # Segment accepts numeric ids and treats them as strings.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("properties", "traits", "context", mode="before")
    @classmethod
    def _null_as_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class SegmentBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    batch: list[dict[str, Any]] = Field(min_length=1)
    sentAt: datetime | None = None


def to_event(
    raw: dict[str, Any],
    call_type: CallType,
    *,
    workspace_id: str,
    received_at: datetime,
    sent_at: datetime | None = None,
    field_prefix: str = "",
) -> Event:
    """Validate one Segment call and map it; a 400 ``ApiError`` names the offending field."""
    try:
        call = SegmentCall.model_validate(raw)
    except ValidationError as exc:
        raise invalid_fields(exc, prefix=field_prefix) from exc
    allowed = ("identify", "update") if call_type == "update" else (call_type,)
    if call.type is not None and call.type not in allowed:
        raise bad_request(
            f"type {call.type!r} sent to the {call_type} endpoint", field=f"{field_prefix}type"
        )
    if not (call.userId or call.anonymousId):
        raise bad_request("userId or anonymousId is required", field=f"{field_prefix}userId")
    if call_type == "track" and not call.event:
        raise bad_request("a track call needs an event name", field=f"{field_prefix}event")
    if call_type == "group" and not call.groupId:
        raise bad_request("a group call needs a groupId", field=f"{field_prefix}groupId")
    if call_type == "alias" and not call.previousId:
        raise bad_request("an alias call needs a previousId", field=f"{field_prefix}previousId")
    kind, name = _kind_and_name(call, call_type)
    fields: dict[str, Any] = {
        "workspace_id": workspace_id,
        "kind": kind,
        "name": name,
        "user_id": call.userId or None,
        "anonymous_id": call.anonymousId or None,
        "email": _email(call, call_type),
        "traits": call.traits,
        "properties": _properties(call),
        "context": _context(call.context),
        "timestamp": call.timestamp or call.originalTimestamp or received_at,
        "sent_at": call.sentAt or sent_at,
        "received_at": received_at,
        "source": SOURCE,
    }
    if call.messageId:
        fields["message_id"] = call.messageId
    if call_type == "group":
        fields["group_id"] = call.groupId
    elif call_type == "alias":
        fields["previous_id"] = call.previousId
    try:
        return Event.model_validate(fields)
    except ValidationError as exc:
        raise invalid_fields(exc, prefix=field_prefix) from exc


def _kind_and_name(call: SegmentCall, call_type: CallType) -> tuple[EventKind, str]:
    if call_type == "track":
        assert call.event is not None
        return KIND_BY_TRACK_NAME.get(call.event, EventKind.CUSTOM), call.event
    if call_type in KIND_BY_CALL_TYPE:
        kind = KIND_BY_CALL_TYPE[call_type]
        return kind, str(kind)
    return EventKind.CUSTOM, call_type


def _email(call: SegmentCall, call_type: CallType) -> str | None:
    own = {} if call_type == "group" else call.traits  # a group's traits are the group's
    for traits in (own, call.context.get("traits") or {}):
        email = traits.get("email") if isinstance(traits, dict) else None
        if isinstance(email, str) and email:
            return email
    return None


def _properties(call: SegmentCall) -> dict[str, Any]:
    if call.name is not None and "name" not in call.properties:
        return {**call.properties, "name": call.name}
    return call.properties


def _context(context: dict[str, Any]) -> dict[str, Any]:
    """Segment's camelCase context keys that rules read become canonical snake_case."""
    mapped = dict(context)
    user_agent = mapped.pop("userAgent", None)
    if user_agent is not None:
        mapped["user_agent"] = user_agent
    return mapped


BATCH_CALL_TYPES = tuple(t for t in get_args(CallType) if t != "update")


def batch_call_type(raw: dict[str, Any], index: int) -> CallType:
    """A batch item's call type (items are objects: ``SegmentBatch`` validated them)."""
    call_type = raw.get("type")
    if call_type not in BATCH_CALL_TYPES:
        raise bad_request(f"unsupported or missing type {call_type!r}", field=f"batch.{index}.type")
    return call_type  # type: ignore[return-value]
