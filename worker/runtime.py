"""Per-process resources of a worker, created lazily so that each forked child opens its own
database and Redis connections."""

from __future__ import annotations

from functools import cached_property

import redis
from redis import Redis

from sluice.producer.journal import BatchJournal
from sluice.producer.publisher import Publisher
from sluice.producer.transport import is_redis_url
from sluice.publishing import settings_publisher
from sluice.rules.backends.redis import RedisClaimStore
from sluice.rules.bots import BotDetector
from sluice.rules.engine import RulePolicy, RulesEngine
from sluice.settings import Settings
from sluice.store.engine import make_engine
from sluice.worker.ingest.store import EventStore


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> EventStore:
        return EventStore(
            make_engine(self.settings.database_url, pre_ping=False),
            trigger_max_age_s=self.settings.trigger_max_age_s,
        )

    @cached_property
    def redis(self) -> redis.Redis:
        return _redis_client(self.settings.redis_url)

    @cached_property
    def rule_policy(self) -> RulePolicy:
        return self.settings.rule_policy()

    @cached_property
    def rules(self) -> RulesEngine:
        claims = RedisClaimStore(self.redis, retention_s=self.settings.claim_retention_s)
        return RulesEngine(claims, BotDetector(self.settings.bot_networks))

    @cached_property
    def journal(self) -> BatchJournal:
        return BatchJournal(self.redis)

    @cached_property
    def publisher(self) -> Publisher:
        """How this process publishes a batch (a deferred part, a lost one again)."""
        return settings_publisher(self.settings, self.redis)

    @cached_property
    def broker_redis(self) -> Redis | None:
        """The broker, when it is Redis (the journal sweep reads its queue)."""
        url = self.settings.broker_url
        if not is_redis_url(url):
            return None
        if url == self.settings.redis_url:
            return self.redis
        return _redis_client(url)

    def reset(self) -> None:
        """Drop connections inherited across a fork; they are reopened on first use."""
        for name, attribute in vars(type(self)).items():
            if isinstance(attribute, cached_property):
                self.__dict__.pop(name, None)


def _redis_client(url: str) -> Redis:
    return Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )
