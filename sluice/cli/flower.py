"""``sluice flower``: Flower for the app the settings make, every Sluice queue on its Broker
page (docs/operations.md).

Flower lists the queues its workers consume (``active_queues``), and the app's configured
queues only while no worker runs (``flower.views.BaseHandler.get_active_queue_names``). The
workers consume ``sluice.ingest`` alone: ``sluice.automations`` and the queues task
automations name are for consumers of their own, often not Celery workers Flower sees. So
Flower's list gets those added: Sluice's two queues, and the automations' queues, read from
the database on a thread every ``REFRESH_S`` (a Broker page never waits on the database).

Flower can revoke tasks and shut workers down, and it listens on every address unless told:
``flower_argv`` binds it to ``127.0.0.1`` unless ``--address`` says otherwise, and refuses an
address other hosts reach when nothing asks for a password (``FLOWER_BASIC_AUTH``,
``--basic-auth``, or Flower's OAuth, ``FLOWER_AUTH`` / ``--auth``)."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Celery

from sluice.actions.task import DEFAULT_TASK_QUEUE
from sluice.producer.wire import INGEST_QUEUE
from sluice.settings import Settings

log = logging.getLogger(__name__)

REFRESH_S = 30.0
DEFAULT_ADDRESS = "127.0.0.1"
AUTH_OPTIONS = ("--basic-auth", "--auth")
AUTH_VARIABLES = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")


class FlowerAddressError(ValueError):
    """Flower would listen where other hosts reach it, with no password asked."""


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in ``args`` (the last one)."""
    found = None
    for index, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            found = arg.partition("=")[2]
        elif arg == name and index + 1 < len(args):
            found = args[index + 1]
    return found


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name, or '' (every address)
        return False


def flower_argv(args: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The options for ``celery flower``: ``args`` with ``--address=127.0.0.1`` added when
    no address is given; raises ``FlowerAddressError`` for a non-loopback address without
    authentication (module docstring)."""
    address = _option(args, "--address")
    if address is None:
        return [*args, f"--address={DEFAULT_ADDRESS}"]
    authenticated = any(environ.get(name) for name in AUTH_VARIABLES) or any(
        _option(args, name) for name in AUTH_OPTIONS
    )
    if not is_loopback(address) and not authenticated:
        shown = address or "every address"
        raise FlowerAddressError(
            f"refusing to serve Flower on {shown} without a password: set "
            "FLOWER_BASIC_AUTH=user:password (or --basic-auth), or bind --address=127.0.0.1"
        )
    return list(args)


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
