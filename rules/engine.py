"""The engine: every restriction, applied to one batch in order (docs/architecture.md §3).

For each event, first match wins:

1. its message id was decided before: by this same batch (a redelivery) → that verdict
   again; by another batch, or earlier in this batch → discarded ``duplicate_message``;
2. a bot (``sluice.rules.bots``) → discarded ``bot``, or in ``flag`` mode accepted and flagged
   (flagged events claim nothing, so a prefetching bot cannot use up a user's window);
3. a user is required and unknown → while the grace period runs, deferred (status
   ``queued``, retried at ``retry_at``); after it, rejected ``unknown_user``;
4. a confirmation with an order id → one claim per (workspace, order id); refused claims
   are discarded ``duplicate_order``;
5. an email open with a user → one claim per (workspace, user) and window of event time;
   refused claims are discarded ``throttled``;
6. otherwise accepted.

Users created by accepted events earlier in the batch count as existing for later ones.
The engine reads each port once per batch and makes one claim call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from sluice.producer import keys
from sluice.producer.events import ORDER_PROPERTIES, Event, EventKind, order_key
from sluice.rules.bots import BotDetector
from sluice.rules.claims import Claim, ClaimStore, OpenClaim, OrderClaim
from sluice.rules.decisions import Decision
from sluice.rules.ports import Identity, MessageLedger, UserDirectory
from sluice.rules.users import UserPolicy, grace_ends, user_policy
from sluice.rules.verdicts import Reason, Status, Verdict


@dataclass(frozen=True, slots=True)
class RulePolicy:
    """Per-workspace rule settings over the ``SLUICE_*`` defaults (README, Configuration)."""

    email_open_window_s: int = 1200
    unknown_user_grace_s: int = 30
    bot_mode: Literal["drop", "flag"] = "drop"


def order_id_of(event: Event) -> str | None:
    """The event's ``order_id`` (set by an adapter), else ``properties.orderId`` or
    ``properties.order_id`` (the user/event API's and Segment's names)."""
    if event.order_id is not None:
        return event.order_id
    for key in ORDER_PROPERTIES:
        found = order_key(event.properties.get(key))
        if found is not None:
            return found
    return None


def duplicate_order(order_id: str, holder: str) -> Verdict:
    """The verdict on a confirmation of an order another message confirmed first."""
    return Verdict.discard(
        Reason.DUPLICATE_ORDER, f"order {order_id} was confirmed by message {holder}"
    )


def open_user_key(event: Event) -> str | None:
    """Whose email opens an open counts against: its first identity, else its anonymous id."""
    found = event.identities
    if found:
        return keys.open_user(*found[0])
    return keys.open_user("anon", event.anonymous_id) if event.anonymous_id else None


class RulesEngine:
    """Applies every restriction to one batch (the order above); one claim call a batch."""

    def __init__(self, claims: ClaimStore, bots: BotDetector) -> None:
        self._claims = claims
        self._bots = bots

    def decide(
        self,
        batch_id: str,
        events: Sequence[Event],
        *,
        ledger: MessageLedger,
        users: UserDirectory,
        policies: Mapping[str, RulePolicy],
        now: datetime,
    ) -> list[Decision]:
        prior = ledger.prior_outcomes({(e.workspace_id, e.message_id) for e in events})
        for_users = [user_policy(e) for e in events]
        # Only events that require their user need the directory; most batches have none.
        known: set[tuple[str, Identity]] = users.existing_identities(
            {
                (e.workspace_id, identity)
                for e, for_user in zip(events, for_users, strict=True)
                if for_user is UserPolicy.REQUIRE
                for identity in e.identities
            }
        )
        seen: set[tuple[str, str]] = set()
        decided: list[Decision | None] = [None] * len(events)
        claims: list[tuple[int, Claim]] = []
        for index, (event, for_user) in enumerate(zip(events, for_users, strict=True)):
            key = (event.workspace_id, event.message_id)
            earlier = prior.get(key)
            if earlier is not None and earlier.batch_id == batch_id and key not in seen:
                decided[index] = Decision.of(event, earlier.verdict, for_user, replayed=True)
            elif earlier is not None or key in seen:
                decided[index] = Decision.of(
                    event, _duplicate_message(earlier is not None), for_user
                )
            else:
                policy = policies.get(event.workspace_id, RulePolicy())
                decided[index], claim = self._one(event, policy, for_user, known, now)
                if claim is not None:
                    claims.append((index, claim))
            seen.add(key)
        self._settle_claims(events, claims, decided)
        return [d for d in decided if d is not None]

    def _one(
        self,
        event: Event,
        policy: RulePolicy,
        for_user: UserPolicy,
        known: set[tuple[str, Identity]],
        now: datetime,
    ) -> tuple[Decision, Claim | None]:
        bot = self._bots.reason(event.context)
        if bot is not None and policy.bot_mode == "drop":
            return Decision.of(event, Verdict.discard(Reason.BOT, bot), for_user), None
        names = [(event.workspace_id, identity) for identity in event.identities]
        if for_user is UserPolicy.REQUIRE and not known.intersection(names):
            ends = grace_ends(event, policy.unknown_user_grace_s)
            who = event.user_id or event.email or "(no user id or email)"
            if now < ends:
                waiting = Verdict(Status.QUEUED, None, f"waiting for user {who} to exist")
                return Decision.of(event, waiting, for_user, retry_at=ends), None
            detail = f"no user {who} after {policy.unknown_user_grace_s} s"
            return Decision.of(event, Verdict.reject(Reason.UNKNOWN_USER, detail), for_user), None
        if for_user is UserPolicy.CREATE:
            known.update(names)
        if bot is not None:
            flagged = Verdict(Status.ACCEPTED, Reason.BOT, f"flagged: {bot}")
            return Decision.of(event, flagged, for_user, bot=True), None
        claim = _claim_for(event, policy)
        order_id = claim.order_id if isinstance(claim, OrderClaim) else None
        return Decision.of(event, Verdict.accept(), for_user, order_id), claim

    def release(self, decisions: Sequence[Decision]) -> None:
        """Give up the claims these decisions made (their events were not stored after all),
        each only where its message still holds it."""
        made = [d.event for d in decisions if d.fires and not d.replayed]
        claims = [c for event in made if event and (c := _claim_for(event, RulePolicy()))]
        if claims:
            self._claims.release(claims)

    def _settle_claims(
        self,
        events: Sequence[Event],
        claims: list[tuple[int, Claim]],
        decided: list[Decision | None],
    ) -> None:
        if not claims:
            return
        results = self._claims.claim([claim for _, claim in claims])
        for (index, claim), result in zip(claims, results, strict=True):
            if result.granted:
                continue
            if isinstance(claim, OrderClaim):
                verdict = duplicate_order(claim.order_id, str(result.holder))
            else:
                verdict = Verdict.discard(
                    Reason.THROTTLED,
                    f"an email open of this user was accepted within "
                    f"{claim.window_ms // 1000} s (message {result.holder})",
                )
            refused = decided[index]
            assert refused is not None
            decided[index] = replace(refused, verdict=verdict, order_id=None)


def _claim_for(event: Event, policy: RulePolicy) -> Claim | None:
    if event.kind is EventKind.CONFIRMATION:
        order_id = order_id_of(event)
        if order_id is not None:
            return OrderClaim(event.workspace_id, order_id, event.message_id)
    elif event.kind is EventKind.EMAIL_OPEN:
        user_key = open_user_key(event)
        if user_key is not None:
            return OpenClaim(
                event.workspace_id,
                user_key,
                event.message_id,
                int(event.timestamp.timestamp() * 1000),
                policy.email_open_window_s * 1000,
            )
    return None


def _duplicate_message(decided_before: bool) -> Verdict:
    where = "in an earlier batch" if decided_before else "earlier in this batch"
    return Verdict.discard(Reason.DUPLICATE_MESSAGE, f"message id already seen {where}")
