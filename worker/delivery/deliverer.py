"""The delivery task: claim a trigger, act once, record the attempt, schedule the next.

Retries wait with exponential backoff and jitter, at least ``Retry-After`` when the
endpoint sent one, and never longer than half the broker's visibility timeout: a countdown
longer than it would be delivered twice (docs/reliability.md #4). A trigger that is not due (a
retry published early, a copy from a replayed batch, an attempt still leased, an endpoint
at its in-flight cap) publishes itself again for when it is due; one that is settled does
nothing. Any failure of the task itself (the database or the broker away) retries the
task with backoff; the attempt cap still ends a trigger that keeps failing.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime
from typing import Any, NoReturn

import httpx
from celery import Celery, Task
from celery.exceptions import Reject

from sluice.producer.events import utc_now
from sluice.producer.wire import DELIVER_TASK, TRIGGERS_QUEUE
from sluice.worker.actions import ACTIONS, Attempt, AttemptResult, Outcome
from sluice.worker.delivery.leases import Claimed, Later, Settled, TriggerStore
from sluice.worker.delivery.payload import trigger_body
from sluice.worker.failures import is_transient
from sluice.worker.retries import retry_or_requeue

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 86_400.0
MAX_TASK_FAILURES = 10  # a delivery task failing this often for no transient cause stops


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential (base · 2^(attempt-1)) with equal jitter, capped at ``cap_s``."""
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 30))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_delay_s(attempt: int, retry_after_s: float | None, base_s: float, cap_s: float) -> float:
    """The wait before the next attempt: the backoff (at most ``cap_s``), or ``Retry-After``
    when the endpoint asks for longer (up to a day). A wait longer than ``cap_s`` is
    bridged by tasks of at most ``cap_s`` that find the trigger not yet due."""
    asked_s = min(retry_after_s or 0.0, MAX_RETRY_AFTER_S)
    return max(backoff_s(attempt, base_s, cap_s), asked_s)


class Deliverer:
    """Everything one delivery needs; one per worker process (threads share it)."""

    def __init__(
        self,
        triggers: TriggerStore,
        http: httpx.Client,
        *,
        allow_private: bool,
        backoff_base_s: float,
        max_delay_s: float,
    ) -> None:
        self.triggers = triggers
        self.http = http
        self.allow_private = allow_private
        self.backoff_base_s = backoff_base_s
        self.max_delay_s = max_delay_s

    def deliver(self, app: Celery, trigger_id: str) -> float | None:
        """One step for a trigger; the countdown before its task should run again (never
        over ``max_delay_s``: a longer wait is bridged), or None when it is settled."""
        now = utc_now()
        claim = self.triggers.claim(trigger_id, now)
        if isinstance(claim, Settled):
            log.debug("trigger %s: nothing to do (%s)", trigger_id, claim.status)
            return None
        if isinstance(claim, Later):
            wait_s: float | None = (claim.at - now).total_seconds()
        else:
            wait_s = self._attempt_and_record(app, claim, now)
        return None if wait_s is None else min(max(wait_s, 0.0), self.max_delay_s)

    def _attempt_and_record(
        self, app: Celery, claim: Claimed, started_at: datetime
    ) -> float | None:
        try:
            outcome = self.attempt(app, claim)
        except Exception as exc:  # recorded like any failed attempt, never lost in a crash
            log.exception("trigger %s: the attempt failed unexpectedly", claim.trigger_id)
            outcome = Outcome(AttemptResult.RETRY, 0, error=f"{type(exc).__name__}: {exc}")
        delay_s = retry_delay_s(
            claim.attempt, outcome.retry_after_s, self.backoff_base_s, self.max_delay_s
        )
        wait_s = self.triggers.record(claim, outcome, started_at, delay_s, utc_now())
        log.info(
            "trigger %s attempt %d (%s %s): %s%s",
            claim.trigger_id,
            claim.attempt,
            claim.automation.action,
            claim.automation.id,
            outcome.result,
            f" ({outcome.error}); next in {wait_s:.1f}s" if wait_s is not None else "",
        )
        return wait_s

    def attempt(self, app: Celery, claim: Claimed) -> Outcome:
        automation = claim.automation
        body = trigger_body(claim.trigger_id, automation, claim.event, claim.created_at)
        attempt = Attempt(
            claim.trigger_id, automation.destination, body, app, self.http, self.allow_private
        )
        return ACTIONS[automation.action].attempt(attempt)


def handle_delivery(task: Task, deliverer: Deliverer, ids: Any) -> None:
    """Deliver the message's triggers one after the other (they share an automation)."""
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        log.error("dropped a delivery task without trigger ids: %r", ids)
        return
    for index, trigger_id in enumerate(ids):
        try:
            again_in_s = deliverer.deliver(task.app, trigger_id)
        except Exception as exc:
            _retry_rest(task, deliverer, ids[index:], exc)
        if again_in_s is not None:
            schedule(task.app, trigger_id, again_in_s)


def _retry_rest(task: Task, deliverer: Deliverer, rest: list[str], exc: Exception) -> NoReturn:
    """The task failed at ``rest[0]``: retry it and the ones after it, with backoff."""
    retries = task.request.retries or 0
    if not is_transient(exc) and retries >= MAX_TASK_FAILURES:
        # The stuck-trigger sweep brings them back later, after their idle period.
        log.exception("triggers %s: the task keeps failing; left to the sweep", rest)
        raise Reject(exc, requeue=False) from exc
    delay = backoff_s(retries + 1, 1.0, min(60.0, deliverer.max_delay_s))
    log.warning("trigger %s: the task failed (%s); again in %.1fs", rest[0], exc, delay)
    retry_or_requeue(task, exc, delay, args=[rest])


def schedule(app: Celery, trigger_id: str, delay_s: float) -> None:
    """Publish the trigger's task for later; if that fails, put this message back rather
    than lose the trigger (it will find itself not yet due and publish itself again)."""
    try:
        app.send_task(DELIVER_TASK, args=[[trigger_id]], queue=TRIGGERS_QUEUE, countdown=delay_s)
    except Exception as exc:
        log.warning("trigger %s: could not schedule the next attempt (%s)", trigger_id, exc)
        raise Reject(exc, requeue=True) from exc
