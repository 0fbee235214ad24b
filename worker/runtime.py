"""Per-process resources of a worker, created lazily so that each forked child opens its own
database and Redis connections."""

from __future__ import annotations

from functools import cached_property

import httpx
import redis
from redis import Redis

from sluice.producer.journal import BatchJournal
from sluice.producer.transport import is_redis_url
from sluice.rules.bots import BotDetector
from sluice.rules.engine import RulePolicy, RulesEngine
from sluice.rules.redis_claims import RedisClaimStore
from sluice.worker.actions.webhook import USER_AGENT
from sluice.worker.db.engine import make_engine
from sluice.worker.delivery.deliverer import Deliverer
from sluice.worker.delivery.leases import DeliveryPolicy, TriggerStore
from sluice.worker.ingest.store import EventStore
from sluice.worker.settings import Settings

BUSY_DELAY_S = 1.0  # an endpoint at its in-flight cap: look again this much later


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
    def broker_redis(self) -> Redis | None:
        """The broker, when it is Redis (the journal sweep reads its queue)."""
        url = self.settings.broker_url
        if not is_redis_url(url):
            return None
        if url == self.settings.redis_url:
            return self.redis
        return _redis_client(url)

    @cached_property
    def deliverer(self) -> Deliverer:
        settings = self.settings
        policy = DeliveryPolicy(
            lease_s=settings.webhook_timeout_s * 3 + 30,  # connect + send + wait, with room
            max_attempts=settings.webhook_max_attempts,
            max_in_flight=settings.webhook_max_in_flight,
            busy_delay_s=BUSY_DELAY_S,
            disable_after_s=settings.webhook_disable_after_s,
        )
        http = httpx.Client(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )
        return Deliverer(
            TriggerStore(self.store.engine, policy),
            http,
            allow_private=settings.allow_private_webhooks,
            backoff_base_s=settings.webhook_backoff_s,
            max_delay_s=settings.max_retry_delay_s(),
        )

    def reset(self) -> None:
        """Drop connections inherited across a fork; they are reopened on first use."""
        for name, attribute in vars(type(self)).items():
            if isinstance(attribute, cached_property):
                self.__dict__.pop(name, None)


def _redis_client(url: str) -> Redis:
    return Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )
