"""A Celery task for in-house consumers: ``send_task(NAME, args=[payload], queue=QUEUE)``
with the payload a webhook would get, JSON-serialised. Delivered once the broker holds it.
Publishing blocks, so it runs in a thread beside the deliverer's event loop."""

from __future__ import annotations

import asyncio
import re

import orjson
from kombu.entity import Queue

from sluice.actions.base import Attempt, AttemptResult, Outcome, Target
from sluice.producer.wire import INGEST_QUEUE

DEFAULT_TASK_QUEUE = "sluice.automations"
# Sluice's queues: ingestion, and the delivery queue of versions before the deliverer.
RESERVED_QUEUES = (INGEST_QUEUE, "sluice.triggers")
NAME_PATTERN = re.compile(r"^[A-Za-z_][\w.:-]{0,199}$")


class TaskAction:
    counted = False
    takes_queue = True

    def checked(self, target: str | None, queue: str | None, *, allow_private: bool) -> Target:
        if not target or not NAME_PATTERN.match(target):
            raise ValueError(f"{target!r} is not a Celery task name")
        queue = queue or DEFAULT_TASK_QUEUE
        if not NAME_PATTERN.match(queue):
            raise ValueError(f"{queue!r} is not a queue name")
        if target.startswith("sluice.") or queue in RESERVED_QUEUES:
            raise ValueError("sluice.* tasks and Sluice's own queues are not for automations")
        return Target(target, queue)

    async def attempt(self, attempt: Attempt) -> Outcome:
        return await asyncio.to_thread(self._publish, attempt)

    @staticmethod
    def _publish(attempt: Attempt) -> Outcome:
        payload = orjson.loads(attempt.body)  # JSON types, for Celery's json serializer
        name, queue = attempt.target.target or "", attempt.target.queue or ""
        try:
            attempt.app.send_task(name, args=[payload], queue=Queue(queue), serializer="json")
        except Exception as exc:
            return Outcome(AttemptResult.RETRY, 0, error=f"{type(exc).__name__}: {exc}")
        return Outcome(AttemptResult.DELIVERED, 0)
