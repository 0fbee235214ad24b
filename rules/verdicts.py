"""The fixed outcome vocabulary (docs/architecture.md §3). Tests and dashboards rely on these
strings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    ACCEPTED = "accepted"
    DISCARDED = "discarded"
    REJECTED = "rejected"


class Reason(StrEnum):
    DUPLICATE_MESSAGE = "duplicate_message"
    DUPLICATE_ORDER = "duplicate_order"
    THROTTLED = "throttled"
    BOT = "bot"
    UNKNOWN_USER = "unknown_user"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to one event: accepted, or discarded/rejected with a reason."""

    status: Status
    reason: Reason | None = None
    detail: str | None = None

    @classmethod
    def accept(cls) -> Verdict:
        return cls(Status.ACCEPTED)

    @classmethod
    def reject(cls, reason: Reason, detail: str) -> Verdict:
        return cls(Status.REJECTED, reason, detail)

    @classmethod
    def discard(cls, reason: Reason, detail: str | None = None) -> Verdict:
        return cls(Status.DISCARDED, reason, detail)
