"""Rotation notices: ``sluice workspace rotate-key`` publishes the workspace id on Redis
(``sluice.worker.admin.keys.announce_rotation``), and each gateway process makes its cached
keys of that workspace due for a lookup, so that a new end (``--grace-s 0`` included) holds
at once rather than after the key cache's TTL. A notice is a hint: one lost (Redis away,
the gateway reconnecting) leaves the TTL as the bound (``sluice.gateway.auth.WriteKeys``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis
import redis.asyncio

from sluice.producer import keys

log = logging.getLogger(__name__)

RECONNECT_S = 1.0


async def listen_for_rotations(redis_url: str, reload: Callable[[str | None], int]) -> None:
    """Call ``reload`` with each rotated workspace's id, until cancelled. After a reconnect
    it calls ``reload(None)`` (every cached key), for the notices missed meanwhile."""
    while True:
        client = redis.asyncio.Redis.from_url(
            redis_url, socket_connect_timeout=5, health_check_interval=30
        )
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(keys.key_rotations())
                reload(None)  # anything published while nobody listened
                async for message in pubsub.listen():
                    data = message.get("data")
                    workspace_id = data.decode() if isinstance(data, bytes) else str(data)
                    reloaded = reload(workspace_id)
                    log.info("keys of workspace %s rotated: %d cached", workspace_id, reloaded)
        except (redis.RedisError, OSError) as exc:
            log.warning("rotation notices: %s; listening again in %.0fs", exc, RECONNECT_S)
        finally:
            await client.aclose()
        await asyncio.sleep(RECONNECT_S)
