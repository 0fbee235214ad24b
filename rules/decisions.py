"""A decision: the verdict on one event of a batch, carried from the rules to storage, with
what storing it implies as properties (docs/architecture.md §3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sluice.producer.events import Event
from sluice.rules.users import UserPolicy
from sluice.rules.verdicts import Reason, Status, Verdict


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict for one event of a batch; ``event`` is None for an event that did not
    validate (then ``raw`` is what arrived)."""

    workspace_id: str
    message_id: str
    verdict: Verdict
    event: Event | None = None
    raw: Any = None
    user_policy: UserPolicy = UserPolicy.NONE  # what the event may do to its user
    order_id: str | None = None  # the order an accepted confirmation claimed
    bot: bool = False  # flagged (bot mode "flag"), stored with the mark
    replayed: bool = False  # decided and committed by an earlier delivery of this batch
    retry_at: datetime | None = None  # deferred: decide again at this time

    @classmethod
    def of(
        cls,
        event: Event,
        verdict: Verdict,
        user_policy: UserPolicy = UserPolicy.NONE,
        order_id: str | None = None,
        *,
        bot: bool = False,
        replayed: bool = False,
        retry_at: datetime | None = None,
    ) -> Decision:
        """The rules' decision on a valid event."""
        return cls(
            event.workspace_id,
            event.message_id,
            verdict,
            event,
            user_policy=user_policy,
            order_id=order_id,
            bot=bot,
            replayed=replayed,
            retry_at=retry_at,
        )

    @property
    def stored(self) -> bool:
        """Accepted (a flagged bot too): the event is stored."""
        return self.verdict.status is Status.ACCEPTED and self.event is not None

    @property
    def fires(self) -> bool:
        """Stored and not a bot: the event may fire automations."""
        return self.stored and not self.bot

    @property
    def claims_order(self) -> bool:
        """An accepted confirmation that holds the claim on its order."""
        return self.order_id is not None and self.fires

    @property
    def writes_traits(self) -> bool:
        """Stored, not a bot, and allowed to update or create its user."""
        return self.fires and self.user_policy is not UserPolicy.NONE

    @property
    def deferred(self) -> bool:
        """Waiting for its user: decided again at ``retry_at``, nothing stored now."""
        return self.retry_at is not None

    @property
    def repeat(self) -> bool:
        """A message id decided before: kept among the repeats, not as an outcome."""
        return self.verdict.reason is Reason.DUPLICATE_MESSAGE
