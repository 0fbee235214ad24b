"""The database's last word on a batch, inside its transaction (docs/architecture.md §3:
Redis is the fast path, the unique constraints decide)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection

from sluice.rules import Reason, Verdict
from sluice.rules.decisions import Decision
from sluice.rules.engine import duplicate_order
from sluice.store.engine import by_workspace, insert_ignoring_conflicts, point_lookup
from sluice.store.schema import order_claims, outcomes


def settle_order_claims(
    conn: Connection, decisions: list[Decision], fresh: Sequence[int], now: datetime
) -> None:
    """Claim in the database the orders the rules engine claimed in Redis for the accepted
    confirmations among ``decisions[i]``, ``i`` in ``fresh``; one another message holds is a
    ``duplicate_order`` now, rewritten in ``decisions``. (A replayed decision claimed
    nothing: its claim row was committed with its first verdict.)"""
    claiming = {
        i: order_id
        for i in fresh
        if decisions[i].claims_order and (order_id := decisions[i].order_id) is not None
    }
    if not claiming:
        return
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
        query = point_lookup(
            conn.dialect,
            [order_claims.c.order_id, order_claims.c.message_id],
            order_claims.c.order_id,
            order_ids,
            order_claims.c.workspace_id == workspace_id,
        )
        holders.update(((workspace_id, r.order_id), r.message_id) for r in conn.execute(query))
    for i, order_id in claiming.items():
        holder = holders.get((decisions[i].workspace_id, order_id))
        if holder is not None and holder != decisions[i].message_id:
            decisions[i] = replace(decisions[i], verdict=duplicate_order(order_id, holder))


def settle_message_ids(
    conn: Connection,
    decisions: list[Decision],
    fresh: Sequence[int],
    batch_id: str,
    inserted: Collection[tuple[str, str]],
) -> None:
    """Which batch owns each message id's outcome now, given the outcome keys our insert
    ``inserted`` for ``decisions[i]``, ``i`` in ``fresh`` (rewritten in ``decisions``).
    Another batch deciding the same message id concurrently (both found no prior
    outcome) wins if it committed first; ours are then repeats. (PostgreSQL: our
    insert waited for theirs; SQLite: serialised.) Only the keys our insert skipped are
    looked up: one of them may be ours after all, written by a concurrent delivery of this
    same batch: that delivery decided it, so it is marked ``replayed`` here (not counted
    twice in the metrics, ``sluice.worker.ingest.measure``). The rules engine marks only
    the events it decides; an invalid event's rejection comes back this way."""
    skipped = {
        (d.workspace_id, d.message_id)
        for d in (decisions[i] for i in fresh)
        if not d.repeat and (d.workspace_id, d.message_id) not in inserted
    }
    lost: set[tuple[str, str]] = set()
    for workspace_id, message_ids in by_workspace(skipped).items():
        query = point_lookup(
            conn.dialect,
            [outcomes.c.message_id],
            outcomes.c.message_id,
            message_ids,
            outcomes.c.workspace_id == workspace_id,
            outcomes.c.batch_id != batch_id,
        )
        lost.update((workspace_id, message_id) for message_id in conn.execute(query).scalars())
    if not skipped:
        return
    repeat = Verdict.discard(
        Reason.DUPLICATE_MESSAGE, "message id decided by another batch at the same time"
    )
    for i in fresh:
        d = decisions[i]
        key = (d.workspace_id, d.message_id)
        if key in lost:
            decisions[i] = replace(d, verdict=repeat)
        elif key in skipped and not d.repeat:
            decisions[i] = replace(d, replayed=True)
