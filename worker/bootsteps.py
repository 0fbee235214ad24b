"""Worker bootsteps: periodic work that runs inside every ``sluice worker`` process."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps

from sluice.worker.delivery.sweep import SWEEP_EVERY_S, sweep_stuck_triggers
from sluice.worker.runtime import Runtime

log = logging.getLogger(__name__)


def sweep_step(runtime: Runtime) -> type[bootsteps.StartStopStep]:
    """A worker bootstep running ``sweep_stuck_triggers`` on the worker's timer."""

    class TriggerSweep(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.components:Timer",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.entry: Any = None

        def start(self, worker: Any) -> None:
            self.entry = worker.timer.call_repeatedly(SWEEP_EVERY_S, self.sweep, (worker.app,))

        def stop(self, worker: Any) -> None:
            if self.entry is not None:
                self.entry.cancel()

        def sweep(self, app: Celery) -> None:
            try:
                sweep_stuck_triggers(app, runtime.redis, lambda: runtime.deliverer)
            except Exception:
                log.exception("the stuck-trigger sweep failed; it runs again in a minute")

    return TriggerSweep
