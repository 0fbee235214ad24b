"""The stuck-trigger sweep: once a minute across the whole cluster
(a Redis lock elects the sweeper), publishes again the open triggers whose task message was
lost, so that no trigger waits forever (docs/reliability.md #1: Redis can lose a message in flight).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from celery import Celery

from sluice.producer import keys
from sluice.producer.events import utc_now
from sluice.worker.delivery.deliverer import Deliverer
from sluice.worker.delivery.dispatch import dispatch

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60
SWEEP_LIMIT = 1000


def sweep_stuck_triggers(
    app: Celery, lock: redis.Redis, deliverer_of: Callable[[], Deliverer]
) -> int:
    """One sweep, if no other worker swept this interval; how many were published. Only
    the worker that takes the lock needs a deliverer (``deliverer_of`` makes it)."""
    if not lock.set(keys.trigger_sweep_lock(), "1", nx=True, ex=SWEEP_EVERY_S):
        return 0
    deliverer = deliverer_of()
    idle_s = deliverer.max_delay_s + deliverer.triggers.policy.lease_s + SWEEP_EVERY_S
    stuck = deliverer.triggers.stuck(utc_now(), idle_s, SWEEP_LIMIT)
    if stuck:
        dispatch(app, stuck)
        log.warning("published %d stuck triggers again (their task messages were lost)", len(stuck))
    return len(stuck)
