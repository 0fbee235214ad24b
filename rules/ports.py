"""The storage ports the engine reads once per batch, besides the claim store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sluice.producer.events import Identity
from sluice.rules.verdicts import Verdict

__all__ = ["Identity", "MessageLedger", "PriorOutcome", "UserDirectory"]


@dataclass(frozen=True, slots=True)
class PriorOutcome:
    """The first verdict recorded for a message id, and the batch that reached it."""

    batch_id: str
    verdict: Verdict


class MessageLedger(Protocol):
    def prior_outcomes(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], PriorOutcome]:
        """First verdicts of the given (workspace_id, message_id) pairs that have one."""
        ...


class UserDirectory(Protocol):
    def existing_identities(
        self, identities: Iterable[tuple[str, Identity]]
    ) -> set[tuple[str, Identity]]:
        """Which of the (workspace_id, identity) pairs belong to an existing user."""
        ...
