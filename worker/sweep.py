"""The stuck-trigger sweep: a worker bootstep that, once a minute across the whole cluster
(a Redis lock elects the sweeper), publishes again the open triggers whose task message was
lost, so that no trigger waits forever (RELIABILITY #1: Redis can lose a message in flight).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps

from producer.events import utc_now
from rules import keys
from worker.fanout import dispatch
from worker.runtime import Runtime

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60
SWEEP_LIMIT = 1000


def sweep_stuck_triggers(app: Celery, runtime: Runtime) -> int:
    """One sweep, if no other worker swept this interval; how many were published."""
    if not runtime.redis.set(keys.trigger_sweep_lock(), "1", nx=True, ex=SWEEP_EVERY_S):
        return 0
    deliverer = runtime.deliverer
    idle_s = deliverer.max_delay_s + deliverer.triggers.policy.lease_s + SWEEP_EVERY_S
    stuck = deliverer.triggers.stuck(utc_now(), idle_s, SWEEP_LIMIT)
    if stuck:
        dispatch(app, stuck)
        log.warning("published %d stuck triggers again (their task messages were lost)", len(stuck))
    return len(stuck)


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
                sweep_stuck_triggers(app, runtime)
            except Exception:
                log.exception("the stuck-trigger sweep failed; it runs again in a minute")

    return TriggerSweep
