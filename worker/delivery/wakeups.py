"""Wake-ups: a worker that committed new triggers tells the deliverers at once, over Redis
publish/subscribe, so that a trigger does not wait for their next poll. A wake-up is a hint:
one that is lost (Redis away, no deliverer listening) only delays the triggers until the
deliverers' next poll (``sluice.worker.delivery.deliverer.POLL_S``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis
import redis.asyncio

from sluice.producer import keys

log = logging.getLogger(__name__)

RECONNECT_S = 1.0


def wake_deliverers(client: redis.Redis, triggers: int) -> None:
    """Tell the deliverers that ``triggers`` new triggers are waiting; never raises."""
    try:
        client.publish(keys.trigger_wakeups(), triggers)
    except redis.RedisError as exc:
        log.warning("could not wake the deliverers (%s); they find the triggers on their own", exc)


async def listen_for_wakeups(redis_url: str, wake: Callable[[], None]) -> None:
    """Call ``wake`` for every wake-up, until cancelled; reconnects after a failure."""
    while True:
        client = redis.asyncio.Redis.from_url(
            redis_url, socket_connect_timeout=5, health_check_interval=30
        )
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(keys.trigger_wakeups())
                wake()  # anything published while nobody listened
                async for _ in pubsub.listen():
                    wake()
        except (redis.RedisError, OSError) as exc:
            log.warning("wake-ups: %s; listening again in %.0fs", exc, RECONNECT_S)
        finally:
            await client.aclose()
        await asyncio.sleep(RECONNECT_S)
