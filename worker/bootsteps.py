"""Worker bootsteps: periodic work that runs inside every ``sluice worker`` process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, bootsteps

from sluice.worker.delivery.sweep import SWEEP_EVERY_S, sweep_stuck_triggers
from sluice.worker.ingest.resend import resend_lost_batches
from sluice.worker.runtime import Runtime

log = logging.getLogger(__name__)


def periodic_step(
    what: str, every_s: float, job: Callable[[Celery], object]
) -> type[bootsteps.StartStopStep]:
    """A worker bootstep running ``job(app)`` every ``every_s`` on the worker's timer; a
    failure is logged and the job runs again next time."""

    class Periodic(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.components:Timer",)
        name = f"sluice {what}"

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.entry: Any = None

        def start(self, worker: Any) -> None:
            self.entry = worker.timer.call_repeatedly(every_s, self.run, (worker.app,))

        def stop(self, worker: Any) -> None:
            if self.entry is not None:
                self.entry.cancel()

        def run(self, app: Celery) -> None:
            try:
                job(app)
            except Exception:
                log.exception("the %s failed; it runs again in %.0fs", what, every_s)

    return Periodic


def sweep_steps(runtime: Runtime) -> list[type[bootsteps.StartStopStep]]:
    """The stuck-trigger sweep, and the journal sweep for lost batches."""
    settings = runtime.settings
    return [
        periodic_step(
            "stuck-trigger sweep",
            SWEEP_EVERY_S,
            lambda app: sweep_stuck_triggers(app, runtime.redis, lambda: runtime.deliverer),
        ),
        periodic_step(
            "journal sweep",
            settings.journal_sweep_s,
            lambda app: resend_lost_batches(
                app,
                runtime.journal,
                runtime.broker_redis,
                grace_s=settings.lost_batch_after_s(),
                every_s=settings.journal_sweep_s,
            ),
        ),
    ]
