"""Fan-out (docs/architecture.md §6): which automations an accepted event fires.

Triggers are rows of ``trigger_deliveries`` written in the transaction that stores their
events (an outbox, and the deliverers' work list): they exist exactly when the event is
committed, once per (message id, automation) by a unique constraint, and nothing is
delivered before that commit, because the deliverers only see committed rows. After the
commit the worker wakes the deliverers; a redelivered batch wakes them again, which is
harmless. Bulletins need no delivery: they are counted, so their triggers are created
delivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from sluice.actions import ACTIONS
from sluice.producer.events import as_utc
from sluice.rules import Status
from sluice.store.automations import (
    Automation,
    Pending,
    TriggerStatus,
    active_automations,
    too_old_to_fire,
)
from sluice.worker.ingest.records import Decision

TRIGGER_NAMESPACE = uuid.UUID("5d2f7d56-4f0e-4c53-9a7e-0b6f3f3c2a11")


def trigger_id(workspace_id: str, message_id: str, automation_id: str) -> str:
    """The trigger's id, also its ``webhook-id``: the same for every delivery of a batch."""
    name = f"{workspace_id}\x00{message_id}\x00{automation_id}"
    return f"trg_{uuid.uuid5(TRIGGER_NAMESPACE, name).hex}"


@dataclass(frozen=True, slots=True)
class FanOut:
    """The triggers planned for a batch's accepted events, by (workspace, message id)."""

    planned: dict[tuple[str, str], list[Automation]]

    def rows(self, owned: Iterable[Decision], now: datetime) -> list[dict[str, Any]]:
        rows = []
        for decision in owned:
            key = (decision.workspace_id, decision.message_id)
            for automation in self.planned.get(key, []):
                counted = ACTIONS[automation.action].counted
                status = TriggerStatus.DELIVERED if counted else TriggerStatus.PENDING
                rows.append(
                    {
                        "id": trigger_id(*key, automation.id),
                        "workspace_id": decision.workspace_id,
                        "message_id": decision.message_id,
                        "automation_id": automation.id,
                        "action": str(automation.action),
                        "status": str(status),
                        "attempts": 0,
                        "next_attempt_at": None if counted else now,
                        "created_at": now,
                        "updated_at": now,
                        "delivered_at": now if counted else None,
                    }
                )
        return rows


def plan_fan_out(
    conn: Connection, decisions: Sequence[Decision], now: datetime, max_age_s: int
) -> tuple[FanOut, list[Decision]]:
    """Match the accepted, non-bot events against their workspaces' active automations.

    Returns the plan and the decisions, where an accepted event older than ``max_age_s``
    (event time against ``now``) that matched automations says in its detail that it
    fired none (docs/architecture.md §6: late events do not fire stale automations)."""
    firing = [
        d
        for d in decisions
        if d.verdict.status is Status.ACCEPTED and d.event is not None and not d.bot
    ]
    if not firing:
        return FanOut({}), list(decisions)
    automations = active_automations(
        conn,
        {d.workspace_id for d in firing},
        {d.event.name for d in firing if d.event is not None},
    )
    if not automations:
        return FanOut({}), list(decisions)
    planned: dict[tuple[str, str], list[Automation]] = {}
    stale: dict[tuple[str, str], str] = {}
    for decision in firing:
        assert decision.event is not None
        matched = [
            a
            for a in automations
            if a.workspace_id == decision.workspace_id and a.matches(decision.event)
        ]
        if not matched:
            continue
        key = (decision.workspace_id, decision.message_id)
        if too_old_to_fire(decision.event, now, max_age_s):
            age_s = int((now - as_utc(decision.event.timestamp)).total_seconds())
            stale[key] = (
                f"stored without firing {len(matched)} matching automation(s): the event is "
                f"{age_s} s old, over the trigger age limit of {max_age_s} s"
            )
        else:
            planned[key] = matched
    annotated = [
        replace(d, verdict=replace(d.verdict, detail=stale[(d.workspace_id, d.message_id)]))
        if (d.workspace_id, d.message_id) in stale
        else d
        for d in decisions
    ]
    return FanOut(planned), annotated


def deliverable(rows: Iterable[dict[str, Any]]) -> list[Pending]:
    pending = str(TriggerStatus.PENDING)
    return [(row["id"], row["automation_id"]) for row in rows if row["status"] == pending]
