"""The database's last word on a batch, inside its transaction (docs/architecture.md §3:
Redis is the fast path, the unique constraints decide)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, select

from sluice.rules import Reason, Status, Verdict
from sluice.rules.engine import duplicate_order
from sluice.store.engine import by_workspace, insert_ignoring_conflicts, matches_any
from sluice.store.schema import order_claims, outcomes
from sluice.worker.ingest.records import Decision


def settle_order_claims(
    conn: Connection, decisions: list[Decision], now: datetime
) -> list[Decision]:
    # The orders the rules engine claimed in Redis for accepted confirmations; a replayed
    # decision claimed nothing, and its claim row was committed with its first verdict.
    claiming = {
        i: d.order_id
        for i, d in enumerate(decisions)
        if d.order_id is not None and d.verdict.status is Status.ACCEPTED and not d.bot
    }
    if not claiming:
        return decisions
    insert_ignoring_conflicts(
        conn,
        order_claims,
        [
            {
                "workspace_id": decisions[i].workspace_id,
                "order_id": order_id,
                "message_id": decisions[i].message_id,
                "claimed_at": now,
            }
            for i, order_id in claiming.items()
        ],
    )
    holders: dict[tuple[str, str], str] = {}
    pairs = [(decisions[i].workspace_id, order_id) for i, order_id in claiming.items()]
    for workspace_id, order_ids in by_workspace(pairs).items():
        query = select(order_claims.c.order_id, order_claims.c.message_id).where(
            order_claims.c.workspace_id == workspace_id,
            matches_any(conn.dialect, order_claims.c.order_id, order_ids),
        )
        holders.update(((workspace_id, r.order_id), r.message_id) for r in conn.execute(query))
    settled = list(decisions)
    for i, order_id in claiming.items():
        holder = holders.get((decisions[i].workspace_id, order_id))
        if holder is not None and holder != decisions[i].message_id:
            settled[i] = replace(decisions[i], verdict=duplicate_order(order_id, holder))
    return settled


def settle_message_ids(
    conn: Connection,
    decisions: list[Decision],
    batch_id: str,
    inserted: Collection[tuple[str, str]],
) -> list[Decision]:
    """Which batch owns each message id's outcome now, given the outcome keys our insert
    ``inserted``. Another batch deciding the same message id concurrently (both found no
    prior outcome) wins if it committed first; ours are then repeats. (PostgreSQL: our
    insert waited for theirs; SQLite: serialised.) Only the keys our insert skipped are
    looked up: one of them may be ours after all, written by a concurrent delivery of this
    same batch: that delivery decided it, so it is marked ``replayed`` here (not counted
    twice in the metrics, ``sluice.worker.ingest.measure``). The rules engine marks only
    the events it decides; an invalid event's rejection comes back this way."""
    skipped = {
        (d.workspace_id, d.message_id)
        for d in decisions
        if d.verdict.reason is not Reason.DUPLICATE_MESSAGE
        and (d.workspace_id, d.message_id) not in inserted
    }
    lost: set[tuple[str, str]] = set()
    for workspace_id, message_ids in by_workspace(skipped).items():
        query = select(outcomes.c.message_id).where(
            outcomes.c.workspace_id == workspace_id,
            matches_any(conn.dialect, outcomes.c.message_id, message_ids),
            outcomes.c.batch_id != batch_id,
        )
        lost.update((workspace_id, message_id) for message_id in conn.execute(query).scalars())
    if not skipped:
        return decisions
    repeat = Verdict.discard(
        Reason.DUPLICATE_MESSAGE, "message id decided by another batch at the same time"
    )

    def settled(d: Decision) -> Decision:
        key = (d.workspace_id, d.message_id)
        if key in lost:
            return replace(d, verdict=repeat)
        if key in skipped and d.verdict.reason is not Reason.DUPLICATE_MESSAGE:
            return replace(d, replayed=True)
        return d

    return [settled(d) for d in decisions]
