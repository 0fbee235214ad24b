"""Handing triggers to the delivery queue."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from sluice.producer.wire import DELIVER_TASK, TRIGGERS_QUEUE
from sluice.worker.admin.automations import Pending

TRIGGERS_PER_TASK = 10


def dispatch(app: Celery, triggers: Sequence[Pending]) -> None:
    """Publish delivery tasks: up to ``TRIGGERS_PER_TASK`` triggers of one automation per
    message (a message costs the worker more than a local delivery does), so that one
    endpoint's slowness stays in its own messages. One producer connection for all."""
    by_automation: dict[str, list[str]] = {}
    for trigger, automation in triggers:
        by_automation.setdefault(automation, []).append(trigger)
    with app.producer_or_acquire() as producer:
        for ids in by_automation.values():
            for start in range(0, len(ids), TRIGGERS_PER_TASK):
                chunk = ids[start : start + TRIGGERS_PER_TASK]
                app.send_task(DELIVER_TASK, args=[chunk], queue=TRIGGERS_QUEUE, producer=producer)
