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
from sluice.rules.decisions import Decision
from sluice.store.automations import (
    Automation,
    Pending,
    TriggerStatus,
    active_automations,
    too_old_to_fire,
)

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
    conn: Connection, decisions: list[Decision], fresh: Sequence[int], now: datetime, max_age_s: int
) -> FanOut:
    """Match the events that fire (accepted, not bots) among ``decisions[i]`` for ``i`` in
    ``fresh`` against their workspaces' active automations.

    An accepted event older than ``max_age_s`` (event time against ``now``) that matched
    automations says so in its detail, rewritten in ``decisions``: it fired none
    (docs/architecture.md §6: late events do not fire stale automations)."""
    firing = [i for i in fresh if decisions[i].fires]
    if not firing:
        return FanOut({})
    automations = active_automations(
        conn,
        {decisions[i].workspace_id for i in firing},
        {event.name for i in firing if (event := decisions[i].event) is not None},
    )
    if not automations:
        return FanOut({})
    planned: dict[tuple[str, str], list[Automation]] = {}
    for i in firing:
        decision, event = decisions[i], decisions[i].event
        assert event is not None
        matched = [
            a for a in automations if a.workspace_id == decision.workspace_id and a.matches(event)
        ]
        if not matched:
            continue
        if too_old_to_fire(event, now, max_age_s):
            age_s = int((now - as_utc(event.timestamp)).total_seconds())
            detail = (
                f"stored without firing {len(matched)} matching automation(s): the event is "
                f"{age_s} s old, over the trigger age limit of {max_age_s} s"
            )
            decisions[i] = replace(decision, verdict=replace(decision.verdict, detail=detail))
        else:
            planned[(decision.workspace_id, decision.message_id)] = matched
    return FanOut(planned)


def deliverable(rows: Iterable[dict[str, Any]]) -> list[Pending]:
    pending = str(TriggerStatus.PENDING)
    return [(row["id"], row["automation_id"]) for row in rows if row["status"] == pending]
