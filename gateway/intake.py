"""Taking a request's events in: backpressure on the queue's depth, the workspace's rate
limit, then one envelope published (or handed to the group committer)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from sluice.gateway.blocking import from_database
from sluice.gateway.cache import TtlCache
from sluice.gateway.errors import ApiError, queue_unavailable, too_large
from sluice.gateway.group_commit import GroupCommitter
from sluice.gateway.rate_limit import RateLimiterUnavailable, WorkspaceRateLimiter
from sluice.producer.envelope import MAX_ENVELOPE_EVENTS
from sluice.producer.errors import PublishError
from sluice.producer.events import Event
from sluice.producer.publisher import Publisher
from sluice.producer.wire import INGEST_QUEUE
from sluice.store.workspaces import rate_limit_per_s


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


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_s: TtlCache[str, int]  # workspace id -> its rate_limit_per_s (0: none)
    limiter: WorkspaceRateLimiter
    database: Engine

    async def charge(self, workspace_id: str, events: int, *, reading: bool = False) -> None:
        """Take a request's events (a read: 1) from the workspace's rate limit, if it has
        one (``sluice.gateway.rate_limit``): 429 past it. Redis not answering is a 503 for
        publishing (which needs Redis anyway); a read goes on uncounted."""
        found, per_s = self.per_s.peek(workspace_id)
        if not found:

            def load() -> int:
                return rate_limit_per_s(self.database, workspace_id)

            per_s = await from_database(self.per_s.get, workspace_id, load)
        if not per_s:
            return  # no limit: no round trip
        try:
            await self.limiter.take(workspace_id, per_s, events)
        except RateLimiterUnavailable as exc:
            if not reading:
                raise queue_unavailable() from exc


@dataclass(frozen=True, slots=True)
class EventQueue:
    depth: QueueDepth
    limits: RateLimits
    publisher: Publisher
    committer: GroupCommitter | None

    async def publish(self, events: Sequence[Event]) -> list[str]:
        """Queue one request's events as one envelope: all or nothing. Answer 429 when the
        queue is deeper than ``max_queue_depth`` or the workspace is past its rate limit,
        503 when the queue is unavailable, all with Retry-After."""
        if events:  # one request's events share their workspace
            await self.admit(events[0].workspace_id, len(events))
        else:
            await self.depth.check()
        return await self.send(events)

    async def admit(self, workspace_id: str, calls: int) -> None:
        """Let a request of ``calls`` calls in, before they are validated (a batch: its raw
        count, invalid calls included, so that validating is not free past the limits):
        413 past ``MAX_ENVELOPE_EVENTS``, 429 on a full queue or past the workspace's rate
        limit, which this charges ``calls``. ``send`` queues what passed."""
        if calls > MAX_ENVELOPE_EVENTS:
            raise too_large(f"at most {MAX_ENVELOPE_EVENTS} events per request")
        await self.depth.check()
        await self.limits.charge(workspace_id, calls)

    async def send(self, events: Sequence[Event]) -> list[str]:
        """Publish events ``admit`` let in; 503 when the queue is unavailable."""
        try:
            if self.committer is not None:
                return await self.committer.submit(events)
            return await run_in_threadpool(self.publisher.publish, events)
        except PublishError as exc:
            raise queue_unavailable() from exc
