"""``sluice flower``: Flower for the app the settings make, every Sluice queue on its Broker
page (docs/operations.md).

Flower lists the queues its workers consume (``active_queues``), and the app's configured
queues only while no worker runs (``flower.views.BaseHandler.get_active_queue_names``). The
workers consume ``sluice.ingest`` alone: ``sluice.automations`` and the queues task
automations name are for consumers of their own, often not Celery workers Flower sees. So
Flower's list gets those added: Sluice's two queues, and the automations' queues, read from
the database on a thread every ``REFRESH_S`` (a Broker page never waits on the database)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

from sluice.actions.task import DEFAULT_TASK_QUEUE
from sluice.producer.wire import INGEST_QUEUE
from sluice.settings import Settings

log = logging.getLogger(__name__)

REFRESH_S = 30.0


class SluiceQueues:
    """The names of Sluice's queues: its own, and those of task automations (refreshed)."""

    def __init__(self, read_automation_queues: Callable[[], list[str]]) -> None:
        self._read = read_automation_queues
        self.names: frozenset[str] = frozenset((INGEST_QUEUE, DEFAULT_TASK_QUEUE))
        self._stop = threading.Event()

    def refresh(self) -> None:
        try:
            found = self._read()
        except Exception as exc:  # keep the last names; the database may come back
            log.warning("cannot read the automations' queues: %s", exc)
            return
        self.names = frozenset((INGEST_QUEUE, DEFAULT_TASK_QUEUE, *found))

    def start(self, every_s: float = REFRESH_S) -> None:
        def loop() -> None:
            while True:
                self.refresh()
                if self._stop.wait(every_s):
                    return

        threading.Thread(target=loop, name="sluice-flower-queues", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def list_in_flower(queues: SluiceQueues) -> None:
    """Make Flower's queue list (Broker page, ``/api/queues/length``) hold ``queues`` too."""
    from flower.views import BaseHandler  # type: ignore[import-untyped]

    workers_queues: Callable[[Any], list[str]] = BaseHandler.get_active_queue_names

    def get_active_queue_names(handler: Any) -> list[str]:
        return sorted(set(workers_queues(handler)) | queues.names)

    BaseHandler.get_active_queue_names = get_active_queue_names


def flower_app(settings: Settings) -> Celery:
    """The app ``celery flower`` runs with: the workers' (broker, serializers), every Sluice
    queue listed."""
    from sluice.store.automations import task_queues
    from sluice.store.engine import make_engine
    from sluice.worker.celery_app import create_app

    app = create_app(settings)
    engine = make_engine(settings.database_url)
    queues = SluiceQueues(lambda: task_queues(engine))
    queues.start()
    list_in_flower(queues)
    return app
