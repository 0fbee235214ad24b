"""Listening to a Redis publish/subscribe channel for as long as a process runs: hints
such as the deliverers' wake-ups (``sluice.wakeups``) and the gateways' key
rotation notices (``sluice.gateway.key_notices``). A hint lost while Redis is away is made
up for by ``on_connect``, called on every (re)subscription."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

log = logging.getLogger(__name__)

RECONNECT_S = 1.0


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
