"""What every route shares: the ``Gateway`` (key and definition lookups, publishing,
outcomes, backpressure) and how a route finds it."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis
from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from sluice.gateway.auth import WriteKeys, basic_auth_user
from sluice.gateway.cache import TtlCache
from sluice.gateway.errors import (
    ApiError,
    queue_unavailable,
    too_large,
    unauthorized,
)
from sluice.gateway.group_commit import GroupCommitter
from sluice.gateway.prefer import applied, requested_wait_s, verdicts
from sluice.gateway.rate_limit import RateLimiterUnavailable, WorkspaceRateLimiter
from sluice.logs import bind
from sluice.producer.envelope import MAX_ENVELOPE_EVENTS
from sluice.producer.errors import PublishError
from sluice.producer.events import Event
from sluice.producer.pending import PendingMarks
from sluice.producer.publisher import Publisher
from sluice.producer.wire import INGEST_QUEUE
from sluice.publishing import settings_publisher
from sluice.settings import Settings
from sluice.store.definitions import Definition, find_definition
from sluice.store.engine import make_engine, ping
from sluice.store.workspaces import key_grant, rate_limit_per_s

T = TypeVar("T")
DEFINITION_CACHE_TTL_S = 30.0


@dataclass
class Gateway:
    """What every route needs: key lookup, the publisher, outcome and pending lookups."""

    settings: Settings
    keys: WriteKeys
    publisher: Publisher
    database: Engine
    marks: PendingMarks
    redis: redis.Redis
    depth: QueueDepth
    definitions: TtlCache[Hashable, Definition]
    limiter: WorkspaceRateLimiter
    rate_limits: TtlCache[str, int]  # workspace id -> its rate_limit_per_s (0: none)
    committer: GroupCommitter | None = None

    async def workspace_from_basic_auth(self, request: Request) -> str:
        write_key = basic_auth_user(request.headers.get("authorization"))
        workspace_id = await self.workspace_for(write_key)
        if workspace_id is None:
            raise unauthorized("unknown write key")
        return workspace_id

    async def workspace_for(self, write_key: str) -> str | None:
        """The key's workspace (cached), or None; 503 while the database is unavailable."""
        found, workspace_id = self.keys.cached(write_key)
        if not found:
            workspace_id = await from_database(self.keys.workspace_for, write_key)
        bind(workspace_id=workspace_id)  # on this request's log lines (sluice.logs)
        return workspace_id

    async def definition(
        self, workspace_id: str, format: Literal["bunce", "clevertap"], **match: str
    ) -> Definition | None:
        """A workspace's definition, or None. Found ones are cached for 30 s; misses are not,
        so a definition added a moment ago works at once. 503 while the database is down."""
        key = (workspace_id, format, tuple(sorted(match.items())))
        found, cached = self.definitions.peek(key)
        if found:
            return cached

        def load() -> Definition | None:
            return find_definition(self.database, workspace_id, format, **match)

        return await from_database(self.definitions.get, key, load)

    async def publish(self, events: Sequence[Event]) -> list[str]:
        """Queue one request's events as one envelope: all or nothing. Answer 429 when the
        queue is deeper than ``max_queue_depth`` or the workspace is past its rate limit,
        503 when the queue is unavailable, all with Retry-After."""
        if len(events) > MAX_ENVELOPE_EVENTS:
            raise too_large(f"at most {MAX_ENVELOPE_EVENTS} events per request")
        await self.depth.check()
        if events:  # one request's events share their workspace
            await self.charge(events[0].workspace_id, len(events))
        try:
            if self.committer is not None:
                return await self.committer.submit(events)
            return await run_in_threadpool(self.publisher.publish, events)
        except PublishError as exc:
            raise queue_unavailable() from exc

    async def charge(self, workspace_id: str, events: int, *, reading: bool = False) -> None:
        """Take a request's events (a read: 1) from the workspace's rate limit, if it has
        one (``sluice.gateway.rate_limit``): 429 past it. Redis not answering is a 503 for
        publishing (which needs Redis anyway); a read goes on uncounted."""
        found, per_s = self.rate_limits.peek(workspace_id)
        if not found:

            def load() -> int:
                return rate_limit_per_s(self.database, workspace_id)

            per_s = await from_database(self.rate_limits.get, workspace_id, load)
        if not per_s:
            return  # no limit: no round trip
        try:
            await self.limiter.take(workspace_id, per_s, events)
        except RateLimiterUnavailable as exc:
            if not reading:
                raise queue_unavailable() from exc

    async def outcomes_if_asked(
        self, request: Request, workspace_id: str, message_ids: Sequence[str]
    ) -> tuple[dict[str, dict[str, Any]] | None, dict[str, str]]:
        """With ``Prefer: wait=N``: the verdicts (within N s) and the response headers."""
        wait_s = requested_wait_s(request)
        if wait_s is None:
            return None, {}
        found = await verdicts(self.database, workspace_id, message_ids, wait_s)
        return found, applied(wait_s)

    def close(self) -> None:
        self.publisher.close()
        self.redis.close()
        self.database.dispose()

    def check_services(self) -> dict[str, str]:
        """``ok`` or the error class, for Redis and for the database."""
        checks = {}
        for name, check in (("redis", self.redis.ping), ("database", lambda: ping(self.database))):
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"error: {type(exc).__name__}"
        return checks


async def from_database(lookup: Callable[..., T], *args: Any) -> T:
    """``lookup(*args)`` in a worker thread; a database error becomes a 503 with Retry-After."""
    try:
        return await run_in_threadpool(lookup, *args)
    except SQLAlchemyError as exc:
        raise ApiError(
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "5"},
        ) from exc


class QueueDepth:
    """Backpressure: refuse new events while the ingest queue is deeper than ``limit``
    batches. The depth is sampled at most every ``sample_s``, so checking costs no round
    trip per request. Only a Redis broker is sampled (``client`` None: no check)."""

    def __init__(
        self,
        client: redis.Redis | None,
        *,
        limit: int,
        sample_s: float = 0.25,
        retry_after_s: int = 5,
    ) -> None:
        self._client = client
        self._limit = limit
        self._sample_s = sample_s
        self._retry_after_s = retry_after_s
        self._depth = 0
        self._reachable = True
        self._sampled_at = float("-inf")

    async def check(self) -> None:
        if self._client is None:
            return
        now = time.monotonic()
        if now - self._sampled_at >= self._sample_s:
            self._sampled_at = now  # one sample per interval, failed or not
            try:
                self._depth = await run_in_threadpool(self._client.llen, INGEST_QUEUE)
                self._reachable = True
            except redis.RedisError as exc:
                self._reachable = False
                raise queue_unavailable(self._retry_after_s) from exc
        if not self._reachable:
            raise queue_unavailable(self._retry_after_s)
        if self._depth >= self._limit:
            raise ApiError(
                429,
                "queue_full",
                f"{self._depth} batches are waiting; nothing was queued, retry later",
                headers={"Retry-After": str(self._retry_after_s)},
            )


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def build_gateway(settings: Settings) -> Gateway:
    database = make_engine(settings.database_url)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.publish_timeout_s,
        socket_connect_timeout=settings.publish_timeout_s / 4,
    )
    publisher = settings_publisher(settings, client)
    assert publisher.marks is not None  # given a Redis client, it marks
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
        marks=publisher.marks,
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
        depth=QueueDepth(
            client if settings.broker_url == settings.redis_url else None,
            limit=settings.max_queue_depth,
            sample_s=settings.queue_depth_sample_s,
        ),
    )
