"""Counts of outcomes by status and reason, and of dead letters, for ``sluice stats``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from sluice.store.dead_letters import dead_letter_counts
from sluice.store.schema import outcomes, repeats


def empty_counts() -> dict[str, Any]:
    return {"events": 0, "accepted": 0, "flagged_bot": 0, "discarded": {}, "rejected": {}}


def outcome_counts(engine: Engine, workspace_id: str | None = None) -> dict[str, Any]:
    """Per workspace: events decided, accepted (of which flagged as bots), and discarded or
    rejected by reason. Repeats of a decided message id count as discarded
    ``duplicate_message``. Without ``workspace_id``: every workspace, and their total.

    Dead letters (open and replayed) under ``dead_letters``: in all, and per workspace of
    their events; for one workspace, only when it has some (the keys above are stable)."""
    decided = select(
        outcomes.c.workspace_id, outcomes.c.status, outcomes.c.reason, func.count()
    ).group_by(outcomes.c.workspace_id, outcomes.c.status, outcomes.c.reason)
    repeated = select(repeats.c.workspace_id, func.count()).group_by(repeats.c.workspace_id)
    if workspace_id is not None:
        decided = decided.where(outcomes.c.workspace_id == workspace_id)
        repeated = repeated.where(repeats.c.workspace_id == workspace_id)
    per_workspace: dict[str, dict[str, Any]] = {}
    total = empty_counts()
    rows = []
    with engine.connect() as conn:
        rows += [tuple(row) for row in conn.execute(decided)]
        rows += [(ws, "discarded", "duplicate_message", n) for ws, n in conn.execute(repeated)]
    for ws, status, reason, count in rows:
        _add(per_workspace.setdefault(ws, empty_counts()), status, reason, count)
        _add(total, status, reason, count)
    letters = dead_letter_counts(engine, workspace_id)
    if workspace_id is not None:
        found = {"workspace_id": workspace_id, **per_workspace.get(workspace_id, empty_counts())}
        return {**found, "dead_letters": letters} if letters["total"] else found
    return {"total": total, "workspaces": per_workspace, "dead_letters": letters}


def _add(counts: dict[str, Any], status: str, reason: str | None, count: int) -> None:
    counts["events"] += count
    if status == "accepted":
        counts["accepted"] += count
        if reason == "bot":
            counts["flagged_bot"] += count
    elif status in ("discarded", "rejected"):
        key = reason or "unspecified"
        counts[status][key] = counts[status].get(key, 0) + count
