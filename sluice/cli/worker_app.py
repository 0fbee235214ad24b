"""The ``sluice worker`` process: the Celery worker, and a deliverer in a thread of it
unless ``--no-deliver`` (the two stages stay apart below the command layer)."""

from __future__ import annotations

from celery import Celery

from sluice.delivery.service import delivery_step
from sluice.settings import Settings
from sluice.worker.celery_app import create_app as create_worker_app


def create_app(settings: Settings, *, deliver: bool = False) -> Celery:
    """The worker's app; its workers also deliver triggers when ``deliver`` is set."""
    return create_worker_app(settings, steps=[delivery_step(settings)] if deliver else ())
