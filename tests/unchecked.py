"""Events from a producer that does not check its workspace id (an older client, a publisher
of its own): what the worker's own rejection of an unknown workspace is for, now that
``EventClient`` refuses one (``sluice.producer.workspace_ids``)."""

from __future__ import annotations

from typing import Any

import redis

from sluice.producer.events import Event, utc_now
from sluice.producer.publisher import open_publisher


def send_unchecked(redis_url: str, workspace_id: str, fields: dict[str, Any]) -> str:
    """Queue one event as ``EventClient`` would, without its check; its ``message_id``."""
    client = redis.Redis.from_url(redis_url)
    publisher = open_publisher(redis_url, client)
    try:
        event = Event.model_validate(
            {"source": "client", "received_at": utc_now(), **fields, "workspace_id": workspace_id}
        )
        return publisher.publish([event])[0]
    finally:
        publisher.close()
        client.close()
