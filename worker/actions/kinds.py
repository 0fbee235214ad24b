"""The action types' names, as stored in ``automations.action``."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    WEBHOOK = "webhook"
    TASK = "task"
    BULLETIN = "bulletin"
