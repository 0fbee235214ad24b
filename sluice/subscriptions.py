"""Listening to a Redis publish/subscribe channel for as long as a process runs: hints
such as the deliverers' wake-ups (``sluice.wakeups``) and the gateways' key
rotation notices (``sluice.gateway.key_notices``). A hint lost while Redis is away is made
up for by ``on_connect``, called on every (re)subscription.

A listener is stopped with ``stop_listener``, not a single ``cancel``: redis-py's asyncio
pub/sub can swallow a cancellation while it reads or reconnects (redis-py issue #2551), and
a task that never ends keeps its process from exiting (a gateway that could not bind its
port then hung on its shutdown)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

log = logging.getLogger(__name__)

RECONNECT_S = 1.0
CANCEL_EVERY_S = 0.1


async def listen(
    redis_url: str,
    channel: str,
    on_message: Callable[[Any], None],
    on_connect: Callable[[], object],
    what: str,
) -> None:
    """Call ``on_message`` with each message's data, and ``on_connect`` once subscribed (for
    what was published while nobody listened), until cancelled; reconnects after a failure."""
    while True:
        client = redis.asyncio.Redis.from_url(
            redis_url, socket_connect_timeout=5, health_check_interval=30
        )
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                on_connect()
                async for message in pubsub.listen():
                    on_message(message.get("data"))
        except (redis.RedisError, OSError) as exc:
            log.warning("%s: %s; listening again in %.0fs", what, exc, RECONNECT_S)
        finally:
            await client.aclose()
        await asyncio.sleep(RECONNECT_S)


async def stop_listener(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` until it has ended: a cancellation redis-py swallowed is sent again
    (module docstring)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_EVERY_S)
    if not task.cancelled() and task.exception() is not None:
        log.warning("a listener ended on an error: %r", task.exception())
