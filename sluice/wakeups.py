"""Wake-ups: a worker that committed new triggers tells the deliverers at once, over Redis
publish/subscribe, so that a trigger does not wait for their next poll. A wake-up is a hint:
one that is lost (Redis away, no deliverer listening) only delays the triggers until the
deliverers' next poll (``sluice.delivery.deliverer.POLL_S``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from sluice.producer import keys
from sluice.subscriptions import listen

log = logging.getLogger(__name__)


def wake_deliverers(client: redis.Redis, triggers: int) -> None:
    """Tell the deliverers that ``triggers`` new triggers are waiting; never raises."""
    try:
        client.publish(keys.trigger_wakeups(), triggers)
    except redis.RedisError as exc:
        log.warning("could not wake the deliverers (%s); they find the triggers on their own", exc)


async def listen_for_wakeups(redis_url: str, wake: Callable[[], None]) -> None:
    """Call ``wake`` for every wake-up, until cancelled; reconnects after a failure."""
    await listen(redis_url, keys.trigger_wakeups(), lambda _: wake(), wake, "wake-ups")
