"""The versioned queue envelope: one message on the queue carries a batch of events.

Wire form (version 1), encoded with orjson::

    {"v": 1, "batch_id": "<uuid4 hex>", "created_at": "<RFC 3339>", "events": [<Event>, ...]}

The producer validates every event before it builds an envelope. The worker decodes the
envelope shell strictly (a bad shell is poison for the dead-letter table) but each event on
its own, so one bad event is rejected with a reason while its siblings go on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice.producer.events import Event, order_under_unique_key, utc_now
from sluice.producer.wire import INGEST_QUEUE, INGEST_TASK, SERIALIZER

ENVELOPE_VERSION = 1
QUEUED_FIELDS = ("message_id", "workspace_id", "timestamp", "received_at")
_FIELDS = frozenset(Event.model_fields)
MAX_ENVELOPE_EVENTS = 1000
MAX_BATCH_ID_CHARS = 64  # a longer batch id makes the envelope poison


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = Field(default_factory=utc_now)
    events: list[Event] = Field(min_length=1, max_length=MAX_ENVELOPE_EVENTS)

    @classmethod
    def of(cls, events: Sequence[Event], batch_id: str | None = None) -> Envelope:
        """An envelope of events that are ``Event`` objects already: built without
        validating each of them again (pydantic re-runs an event's model validators when
        it is given to a model field, a third of what publishing a batch cost)."""
        if not 1 <= len(events) <= MAX_ENVELOPE_EVENTS:
            raise ValueError(f"an envelope holds 1 to {MAX_ENVELOPE_EVENTS} events")
        if not all(isinstance(event, Event) for event in events):
            raise TypeError("Envelope.of takes Event objects")
        fields: dict[str, Any] = {"events": list(events)}
        if batch_id is not None:
            fields["batch_id"] = batch_id
        return cls.model_construct(**fields)

    @cached_property
    def wire(self) -> bytes:
        """The envelope's JSON, encoded once (for the queue and the journal)."""
        return self.model_dump_json().encode()

    @property
    def delay_s(self) -> float:
        """A new batch is due at once."""
        return 0.0

    @property
    def journaled(self) -> bool:
        """A new batch is not in the journal yet."""
        return False

    def task_message(self) -> dict[str, Any]:
        """``send_task`` arguments that queue this envelope for the ingest task."""
        return task_message(self.batch_id, self.wire, len(self.events))

    def encoded(self, *, delay_s: float = 0.0) -> EncodedEnvelope:
        """This envelope as its wire form, due in ``delay_s``."""
        return EncodedEnvelope(self.batch_id, self.wire, len(self.events), delay_s=delay_s)


@dataclass(frozen=True, slots=True)
class EncodedEnvelope:
    """An envelope in its wire form, published as it is: a batch's deferred part (due in
    ``delay_s``), a dead letter's batch replayed, a lost batch published again from the
    journal (``journaled``: its journal entry is there already)."""

    batch_id: str
    wire: bytes
    events: int | None = None  # how many, when known (Flower shows it)
    delay_s: float = 0.0
    journaled: bool = False

    def task_message(self) -> dict[str, Any]:
        message = task_message(self.batch_id, self.wire, self.events)
        if self.delay_s > 0:
            message["countdown"] = self.delay_s
        return message


# What a publisher puts on the queue.
Outgoing = Envelope | EncodedEnvelope


def task_message(batch_id: str, wire: bytes, events: int | None = None) -> dict[str, Any]:
    """``send_task`` arguments that queue an envelope's JSON ``wire`` (of ``events`` events,
    when known) for the ingest task, embedded as is by the queue serializer. The task id is
    the batch id, so Flower, the delivery counter and the journal name batches alike.

    ``argsrepr`` and ``kwargsrepr`` are the message's headers that Flower and the task
    events show for its arguments; Celery's default, a ``repr`` of the arguments, would read
    ``[<orjson.Fragment object at 0x…>]``."""
    count = "" if events is None else f" · {events} event{'' if events == 1 else 's'}"
    return {
        "name": INGEST_TASK,
        "args": [orjson.Fragment(wire)],
        "task_id": batch_id,
        "queue": INGEST_QUEUE,
        "serializer": SERIALIZER,
        "argsrepr": f"batch {batch_id}{count}",
        "kwargsrepr": "{}",
    }


class _Shell(BaseModel):
    model_config = ConfigDict(extra="ignore")

    v: int
    batch_id: str = Field(min_length=1, max_length=MAX_BATCH_ID_CHARS)
    events: list[dict[str, Any]] = Field(min_length=1)


class PoisonEnvelopeError(ValueError):
    """The message is not a Sluice envelope this worker understands."""


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """An event of an envelope that failed validation, kept for its outcome record."""

    raw: dict[str, Any]
    error: str

    @property
    def workspace_id(self) -> str | None:
        value = self.raw.get("workspace_id")
        return value if isinstance(value, str) and value else None

    @property
    def message_id(self) -> str | None:
        value = self.raw.get("message_id")
        return value if isinstance(value, str) and 0 < len(value) <= 100 else None


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    batch_id: str
    items: list[Event | InvalidEvent]


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message`` for each problem, joined; short enough for an outcome record."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _from_older_producers(fields: dict[str, Any]) -> dict[str, Any]:
    """What a gateway from before ``order_id`` and ``creates_user`` existed left for the
    rules to work out from the source: its Bento events create their users, and a Bento
    purchase names its order in ``properties.details.unique.key``. Such envelopes may wait
    in the queue (or come back from a retry) after an upgrade."""
    if fields.get("source") != "bento" or "creates_user" in fields:
        return fields
    key = order_under_unique_key((fields.get("properties") or {}).get("details"))
    return {**fields, "creates_user": True, **({"order_id": key} if key is not None else {})}


def decode_envelope(payload: Any) -> DecodedBatch:
    """Decode a queued envelope; raise ``PoisonEnvelopeError`` if its shell is not one."""
    try:
        shell = _Shell.model_validate(payload)
    except ValidationError as exc:
        raise PoisonEnvelopeError(
            f"not a Sluice envelope: {describe_validation_error(exc)}"
        ) from exc
    if shell.v != ENVELOPE_VERSION:
        raise PoisonEnvelopeError(f"unsupported envelope version {shell.v}")
    items: list[Event | InvalidEvent] = []
    for raw in shell.events:
        missing = [name for name in QUEUED_FIELDS if raw.get(name) is None]
        if missing:
            # Producers fill these before queueing; filling them here would give every
            # redelivery a new message id or time.
            items.append(
                InvalidEvent(
                    raw=raw,
                    error="; ".join(f"{name}: missing from the queued event" for name in missing),
                )
            )
            continue
        try:
            # Fields a newer producer added are ignored, so a rolling deploy keeps working.
            fields = _from_older_producers({k: v for k, v in raw.items() if k in _FIELDS})
            items.append(Event.model_validate(fields))
        except ValidationError as exc:
            items.append(InvalidEvent(raw=raw, error=describe_validation_error(exc)))
    return DecodedBatch(batch_id=shell.batch_id, items=items)
