"""Running a deliverer: everything it needs, made from the settings, in an event loop of
its own: in the foreground (``sluice deliverer``) or in a thread of a ``sluice worker``
(``DeliveryThread``)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from functools import partial
from typing import Any

import redis
from celery import Celery, bootsteps

from sluice.actions.webhook_client import open_session
from sluice.delivery.deliverer import Deliverer
from sluice.delivery.heartbeat import Heartbeat
from sluice.delivery.leases import DeliveryPolicy, TriggerStore
from sluice.ops.metrics.families import TRIGGERS
from sluice.ops.metrics.tally import add_counts
from sluice.settings import Settings
from sluice.store.engine import make_engine
from sluice.subscriptions import stop_listener
from sluice.wakeups import listen_for_wakeups

log = logging.getLogger(__name__)

RESTART_S = 1.0


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        # An attempt, then the time to record it, with room: a lease that ran out while
        # its attempt still ran would let a second deliverer attempt the trigger.
        lease_s=settings.webhook_timeout_s * 3 + 30,
        max_attempts=settings.webhook_max_attempts,
        disable_after_s=settings.webhook_disable_after_s,
    )


class DeliveryService:
    """One deliverer; ``run`` it in an event loop, ``stop`` it from any thread."""

    def __init__(self, settings: Settings, app: Celery, heartbeat: Heartbeat | None = None) -> None:
        self.settings = settings
        self.app = app
        self.heartbeat = heartbeat  # ``sluice deliverer``'s, for ``sluice check deliverer``
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliverer: Deliverer | None = None
        self.stop_asked = False
        self.ready = threading.Event()

    async def run(self) -> None:
        settings = self.settings
        engine = make_engine(settings.database_url)
        store = TriggerStore(engine, delivery_policy(settings))
        concurrency = settings.delivery_concurrency
        metrics = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=2
        )
        http = open_session(
            timeout_s=settings.webhook_timeout_s,
            max_connections=concurrency,
            allow_private=settings.allow_private_webhooks,
        )
        deliverer = Deliverer(
            store,
            http,
            self.app,
            concurrency=concurrency,
            max_in_flight=settings.webhook_max_in_flight,
            allow_private=settings.allow_private_webhooks,
            backoff_base_s=settings.webhook_backoff_s,
            max_backoff_s=float(settings.webhook_max_backoff_s),
            attempt_timeout_s=settings.webhook_timeout_s,
            heartbeat=self.heartbeat.beat if self.heartbeat is not None else None,
            count_statuses=partial(add_counts, metrics, TRIGGERS),
        )
        self._loop, self._deliverer = asyncio.get_running_loop(), deliverer
        listener = asyncio.create_task(listen_for_wakeups(settings.redis_url, deliverer.wake))
        if self.stop_asked:
            deliverer.stop()
        log.info("deliverer ready: up to %d attempts at once", concurrency)
        self.ready.set()
        try:
            await deliverer.run(grace_s=settings.webhook_timeout_s)
        finally:
            self._loop = self._deliverer = None  # a restart makes new ones
            await stop_listener(listener)
            if self.heartbeat is not None:
                self.heartbeat.stop()
            await http.close()
            engine.dispose()
            metrics.close()
            log.info("deliverer stopped")

    def stop(self) -> None:
        """Stop claiming, let the attempts under way finish, record them (thread-safe)."""
        self.stop_asked = True
        if self._loop is not None and self._deliverer is not None:
            self._loop.call_soon_threadsafe(self._deliverer.stop)


class DeliveryThread:
    """A deliverer in a thread of this process (a ``sluice worker`` that also delivers)."""

    def __init__(self, service: DeliveryService) -> None:
        self.service = service
        self.thread = threading.Thread(target=self._main, name="sluice-deliverer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float) -> None:
        self.service.stop()
        self.thread.join(timeout_s)

    def _main(self) -> None:
        while not self.service.stop_asked:
            try:
                asyncio.run(self.service.run())
            except Exception:
                log.exception("the deliverer stopped on an error; starting it again")
                time.sleep(RESTART_S)


def worker_heartbeat(settings: Settings) -> Heartbeat | None:
    """The heartbeat of a worker's deliverer: only when SLUICE_DELIVERER_HEARTBEAT_PATH is
    set (``sluice dev`` sets it), so that a worker and a ``sluice deliverer`` of one host
    never share the default file."""
    if "deliverer_heartbeat_path" not in settings.model_fields_set:
        return None
    return Heartbeat(settings.deliverer_heartbeat_path)


def delivery_step(settings: Settings) -> type[bootsteps.StartStopStep]:
    """A deliverer in a thread of the worker's main process, started once the pool is up,
    stopped with the worker after its attempts under way and their records. (A pool
    process that replaces one later is forked while the thread runs; it only runs tasks,
    and uses none of the deliverer's connections.)"""

    class Delivery(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.components:Pool",)
        name = "sluice deliverer"

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.thread: DeliveryThread | None = None

        def start(self, worker: Any) -> None:
            self.thread = DeliveryThread(
                DeliveryService(settings, worker.app, worker_heartbeat(settings))
            )
            self.thread.start()

        def stop(self, worker: Any) -> None:
            if self.thread is not None:
                # The attempts' grace, then the recorder's (deliverer.Deliverer.run).
                self.thread.stop(timeout_s=settings.webhook_timeout_s * 2 + 15)

    return Delivery
