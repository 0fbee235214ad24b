"""The gateway's collaborators, built once per app (``build_gateway``) and kept on
``app.state``; route handlers receive them through ``sluice.gateway.dependencies``."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sluice.gateway.auth import WriteKeys
from sluice.gateway.cache import TtlCache
from sluice.gateway.group_commit import GroupCommitter
from sluice.gateway.intake import QueueDepth
from sluice.gateway.rate_limit import WorkspaceRateLimiter
from sluice.gateway.waits import WaitSlots
from sluice.producer.publisher import Publisher
from sluice.publishing import settings_publisher
from sluice.settings import Settings
from sluice.store.definitions import Definition
from sluice.store.engine import make_engine
from sluice.store.workspaces import key_grant

DEFINITION_CACHE_TTL_S = 30.0


@dataclass
class Gateway:
    """What the routes share: settings, connections, caches, the publisher and the limits."""

    settings: Settings
    keys: WriteKeys
    publisher: Publisher
    database: Engine
    redis: redis.Redis
    depth: QueueDepth
    definitions: TtlCache[Hashable, Definition]
    limiter: WorkspaceRateLimiter
    rate_limits: TtlCache[str, int]  # workspace id -> its rate_limit_per_s (0: none)
    waits: WaitSlots  # Prefer: wait requests under way, per workspace
    committer: GroupCommitter | None = None

    def close(self) -> None:
        self.publisher.close()
        self.redis.close()
        self.database.dispose()


def build_gateway(settings: Settings) -> Gateway:
    database = make_engine(settings.database_url)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.publish_timeout_s,
        socket_connect_timeout=settings.publish_timeout_s / 4,
    )
    publisher = settings_publisher(settings, client)
    committer = None
    if settings.group_commit_ms > 0:
        committer = GroupCommitter(publisher.publish, window_s=settings.group_commit_ms / 1000)
    return Gateway(
        settings=settings,
        keys=WriteKeys(
            lambda key: key_grant(database, key),
            ttl_s=settings.key_cache_ttl_s,
            stale_s=settings.key_cache_stale_s,
        ),
        publisher=publisher,
        database=database,
        redis=client,
        committer=committer,
        limiter=WorkspaceRateLimiter(
            settings.redis_url,
            window_s=settings.rate_limit_window_s,
            timeout_s=settings.publish_timeout_s,
        ),
        # Each workspace's limit, read again at most every key_cache_ttl_s (30 s).
        rate_limits=TtlCache(
            ttl_s=settings.key_cache_ttl_s,
            cache_misses=True,
            stale_s=settings.key_cache_stale_s,
            stale_if=(SQLAlchemyError,),
        ),
        # Found definitions for 30 s (misses not: one added a moment ago works at once).
        definitions=TtlCache(
            ttl_s=DEFINITION_CACHE_TTL_S,
            cache_misses=False,
            stale_s=settings.key_cache_stale_s,
            stale_if=(SQLAlchemyError,),
        ),
        waits=WaitSlots(settings.max_waits_per_workspace),
        depth=QueueDepth(
            client if settings.broker_url == settings.redis_url else None,
            limit=settings.max_queue_depth,
            sample_s=settings.queue_depth_sample_s,
        ),
    )
