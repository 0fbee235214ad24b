"""The publisher of a server process (the gateway, a worker, ``sluice dlq replay``), made
from its settings: one wiring of marks, journal and broker for all of them."""

from __future__ import annotations

import redis

from sluice.producer.envelope import MAX_ENVELOPE_EVENTS
from sluice.producer.publisher import Publisher, open_publisher
from sluice.settings import Settings


def settings_publisher(settings: Settings, client: redis.Redis) -> Publisher:
    """Publishing to ``SLUICE_BROKER_URL``; marks and the journal in Redis (``client``)."""
    return open_publisher(
        settings.broker_url,
        client,
        timeout_s=settings.publish_timeout_s,
        visibility_timeout_s=settings.visibility_timeout_s,
        batch_events=MAX_ENVELOPE_EVENTS,
        pending_ttl_s=settings.pending_ttl_s,
    )
