"""What every action type offers, and what one delivery attempt has and gives back."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import aiohttp
from celery import Celery


class Action(StrEnum):
    """An action type's name, as stored in ``automations.action``."""

    WEBHOOK = "webhook"
    TASK = "task"
    BULLETIN = "bulletin"


class AttemptResult(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # 5xx, 429, timeout, connection error
    FAILED = "failed"  # other 4xx, refused URL: retrying would not help
    GONE = "gone"  # 410: the endpoint asks to be disabled


@dataclass(frozen=True, slots=True)
class Outcome:
    result: AttemptResult
    latency_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """An automation's checked target: a URL or a task name, the task's queue, and the
    webhook signing secret (made here, shown once)."""

    target: str | None = None
    queue: str | None = None
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt of a trigger: its automation's target and the payload (JSON)."""

    trigger_id: str
    target: Target
    body: bytes
    app: Celery
    http: aiohttp.ClientSession
    allow_private: bool


class ActionType(Protocol):
    counted: bool  # True: counted in the ingest transaction, never delivered
    takes_queue: bool  # the ``--queue`` option applies

    def checked(self, target: str | None, queue: str | None, *, allow_private: bool) -> Target:
        """The target as stored, or ``ValueError`` with the reason it is refused."""
        ...

    async def attempt(self, attempt: Attempt) -> Outcome:
        """Act once; never raises for the endpoint's or the broker's failures."""
        ...
