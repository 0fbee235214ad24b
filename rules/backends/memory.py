"""In-memory implementations of the rule ports: the reference the Redis and database
implementations are tested against, and the store for code that uses the engine in tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sluice.producer.events import Event
from sluice.rules.bots import BotDetector
from sluice.rules.claims import GRANTED, Claim, ClaimResult, OrderClaim
from sluice.rules.decisions import Decision
from sluice.rules.engine import RulePolicy, RulesEngine
from sluice.rules.ports import Identity, PriorOutcome
from sluice.rules.users import UserPolicy
from sluice.rules.verdicts import Status, Verdict


class MemoryClaimStore:
    """The reference implementation: plain dictionaries, same contract as Redis."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, str], str] = {}
        self.opens: dict[tuple[str, str], dict[str, int]] = {}

    def claim(self, claims: Sequence[Claim]) -> list[ClaimResult]:
        return [self._one(claim) for claim in claims]

    def _one(self, claim: Claim) -> ClaimResult:
        if isinstance(claim, OrderClaim):
            holder = self.orders.setdefault((claim.workspace_id, claim.order_id), claim.message_id)
            return GRANTED if holder == claim.message_id else ClaimResult(False, holder)
        opens = self.opens.setdefault((claim.workspace_id, claim.user_key), {})
        if claim.message_id in opens:
            return GRANTED
        for holder, time_ms in opens.items():
            if abs(time_ms - claim.event_time_ms) < claim.window_ms:
                return ClaimResult(False, holder)
        opens[claim.message_id] = claim.event_time_ms
        return GRANTED

    def release(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            if isinstance(claim, OrderClaim):
                key = (claim.workspace_id, claim.order_id)
                if self.orders.get(key) == claim.message_id:
                    del self.orders[key]
            else:
                self.opens.get((claim.workspace_id, claim.user_key), {}).pop(claim.message_id, None)


class MemoryLedger:
    """First verdicts by (workspace, message id), as the outcomes table keeps them."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], PriorOutcome] = {}

    def prior_outcomes(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], PriorOutcome]:
        return {key: self.first[key] for key in keys if key in self.first}

    def record(self, workspace_id: str, message_id: str, batch_id: str, verdict: Verdict) -> None:
        self.first.setdefault((workspace_id, message_id), PriorOutcome(batch_id, verdict))


class MemoryDirectory:
    """Known user identities per workspace, as the contacts table keeps them."""

    def __init__(self) -> None:
        self.known: set[tuple[str, Identity]] = set()

    def existing_identities(
        self, identities: Iterable[tuple[str, Identity]]
    ) -> set[tuple[str, Identity]]:
        return {identity for identity in identities if identity in self.known}

    def add(self, workspace_id: str, identities: Sequence[Identity]) -> None:
        self.known.update((workspace_id, identity) for identity in identities)


class MemoryRules:
    """The engine over in-memory ports, committing each batch as the database would."""

    def __init__(self, bots: BotDetector | None = None) -> None:
        self.claims = MemoryClaimStore()
        self.ledger = MemoryLedger()
        self.directory = MemoryDirectory()
        self.rules = RulesEngine(self.claims, bots or BotDetector())

    def run(
        self,
        batch_id: str,
        events: Sequence[Event],
        *,
        now: datetime,
        policies: Mapping[str, RulePolicy] | None = None,
    ) -> list[Decision]:
        decided = self.rules.decide(
            batch_id,
            events,
            ledger=self.ledger,
            users=self.directory,
            policies=policies or {},
            now=now,
        )
        for item in decided:
            if item.deferred or item.replayed:
                continue
            if not item.repeat:
                self.ledger.record(item.workspace_id, item.message_id, batch_id, item.verdict)
            creates = item.user_policy is UserPolicy.CREATE
            if item.event is not None and item.verdict.status is Status.ACCEPTED and creates:
                self.directory.add(item.workspace_id, item.event.identities)
        return decided


__all__ = ["MemoryClaimStore", "MemoryDirectory", "MemoryLedger", "MemoryRules"]
