"""Rotation notices: ``sluice workspace rotate-key`` publishes the workspace id on Redis
(``sluice.store.write_keys.announce_rotation``), and each gateway process makes its cached
keys of that workspace due for a lookup, so that a new end (``--grace-s 0`` included) holds
at once rather than after the key cache's TTL. A notice is a hint: one lost (Redis away,
the gateway reconnecting) leaves the TTL as the bound (``sluice.gateway.auth.WriteKeys``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sluice.producer import keys
from sluice.subscriptions import listen

log = logging.getLogger(__name__)


async def listen_for_rotations(redis_url: str, reload: Callable[[str | None], int]) -> None:
    """Call ``reload`` with each rotated workspace's id, until cancelled. After a reconnect
    it calls ``reload(None)`` (every cached key), for the notices missed meanwhile."""

    def rotated(data: object) -> None:
        workspace_id = data.decode() if isinstance(data, bytes) else str(data)
        reloaded = reload(workspace_id)
        log.info("keys of workspace %s rotated: %d cached", workspace_id, reloaded)

    await listen(redis_url, keys.key_rotations(), rotated, lambda: reload(None), "rotation notices")
