"""The claim port: atomic, replay-safe claims on order ids and email-open windows.

A claim records the claiming ``message_id``. Claiming again with the same message id (a
redelivery of the same event) is granted again, so a replayed batch reaches the verdicts of
its first delivery; a claim held by another message is refused and names the holder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OrderClaim:
    """At most one message per (workspace, order id)."""

    workspace_id: str
    order_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class OpenClaim:
    """At most one accepted email open per (workspace, user) within ``window_ms`` of event
    time on either side: any two granted opens are at least ``window_ms`` apart."""

    workspace_id: str
    user_key: str
    message_id: str
    event_time_ms: int
    window_ms: int


Claim = OrderClaim | OpenClaim


@dataclass(frozen=True, slots=True)
class ClaimResult:
    granted: bool
    holder: str | None = None  # the message id holding the conflicting claim


GRANTED = ClaimResult(True)


class ClaimStore(Protocol):
    def claim(self, claims: Sequence[Claim]) -> list[ClaimResult]:
        """Apply the claims in order, each atomically; one round trip for the batch."""
        ...

    def release(self, claims: Sequence[Claim]) -> None:
        """Drop each claim if its message still holds it (a claim another message holds is
        left alone); one round trip for the batch."""
        ...
