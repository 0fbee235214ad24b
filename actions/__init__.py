"""What an automation does when it fires (docs/architecture.md §6): one entry of ``ACTIONS``
per action type. An entry says how its target is checked when an automation is added,
whether its triggers are counted in the ingest transaction (nothing to send) or delivered,
and how one delivery attempt goes."""

from __future__ import annotations

from sluice.actions.base import (
    Action,
    ActionType,
    Attempt,
    AttemptResult,
    Outcome,
    Target,
)
from sluice.actions.bulletin import BulletinAction
from sluice.actions.task import TaskAction
from sluice.actions.webhook import WebhookAction

ACTIONS: dict[Action, ActionType] = {
    Action.WEBHOOK: WebhookAction(),
    Action.TASK: TaskAction(),
    Action.BULLETIN: BulletinAction(),
}

__all__ = [
    "ACTIONS",
    "Action",
    "ActionType",
    "Attempt",
    "AttemptResult",
    "Outcome",
    "Target",
]
