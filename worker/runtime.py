"""Per-process resources of a worker, created lazily so that each forked child opens its own
database and Redis connections."""

from __future__ import annotations

from functools import cached_property

import redis

from producer.pending import PendingMarks
from rules.bots import BotDetector
from rules.engine import Engine, RulePolicy
from rules.redis_claims import RedisClaimStore
from worker.db import make_engine
from worker.settings import Settings
from worker.store import EventStore


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> EventStore:
        return EventStore(make_engine(self.settings.database_url))

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )

    @cached_property
    def rule_policy(self) -> RulePolicy:
        return self.settings.rule_policy()

    @cached_property
    def engine(self) -> Engine:
        claims = RedisClaimStore(self.redis, retention_s=self.settings.claim_retention_s)
        return Engine(claims, BotDetector(self.settings.bot_networks))

    @cached_property
    def marks(self) -> PendingMarks:
        return PendingMarks(self.redis, ttl_s=self.settings.pending_ttl_s)

    def reset(self) -> None:
        """Drop connections inherited across a fork; they are reopened on first use."""
        for name in ("store", "redis", "marks", "engine"):
            self.__dict__.pop(name, None)
