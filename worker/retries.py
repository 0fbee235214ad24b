"""Retrying a Celery task without ever losing its message (docs/reliability.md #8, #9)."""

from __future__ import annotations

from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Reject


def retry_or_requeue(task: Task, exc: Exception, countdown_s: float, **options: Any) -> NoReturn:
    """Retry ``task`` after ``countdown_s`` (``options`` as for ``Task.retry``, e.g. new
    ``args``). If Celery cannot publish the retry it would drop the message; it is put
    back on the queue instead."""
    try:
        retry = task.retry(exc=exc, countdown=countdown_s, throw=False, **options)
    except Reject as refused:
        raise Reject(refused.reason, requeue=True) from exc
    raise retry from exc
