"""Per-workspace rate limits: a workspace's events per second, shared by every gateway
process through Redis (docs/data-lifecycle.md, "Per-workspace rate limits").

The unit is the event, what costs downstream: a ``/v1/batch`` of 500 events takes 500, a
single call 1, a read (``GET /v1/events/{id}``) 1. A workspace with ``rate_limit_per_s=N``
may queue ``N * window_s`` events in any ``window_s`` seconds (``SLUICE_RATE_LIMIT_WINDOW_S``),
counted by the ``limits`` library's sliding-window counter: one Lua script, one round trip,
two integer keys per workspace (``sluice.producer.keys.rate_limit_windows``), the same cost
for a batch of 500 as for one event. A request that would go over is refused whole (429,
``Retry-After``); one larger than a whole window could ever hold gets 413.
"""

from __future__ import annotations

import redis.asyncio
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from sluice.gateway.errors import ApiError
from sluice.producer.keys import RATE_LIMIT_NAMESPACE, RATE_LIMIT_PREFIX


class RateLimiterUnavailable(Exception):
    """Redis did not answer the limiter: the caller decides (publishing answers 503, a read
    goes on uncounted)."""


class WorkspaceRateLimiter:
    """Takes events from a workspace's budget in Redis, on the event loop (redis-py's
    asyncio client: no worker thread per request)."""

    def __init__(self, redis_url: str, *, window_s: int, timeout_s: float) -> None:
        self.window_s = window_s
        self._pool = redis.asyncio.ConnectionPool.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s / 4
        )
        storage = RedisStorage(
            # The pool says where Redis is; the URI only picks the storage kind.
            "async+redis://",
            implementation="redispy",
            connection_pool=self._pool,  # type: ignore[arg-type]  # documented, typed narrowly
            key_prefix=RATE_LIMIT_PREFIX,
            wrap_exceptions=True,
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    async def take(self, workspace_id: str, per_s: int, events: int) -> None:
        """Take ``events`` (at least 1) from the workspace's budget of ``per_s`` events a
        second, or raise a 429 ``ApiError`` (nothing taken) or a 413 one (more than a window
        holds); ``RateLimiterUnavailable`` when Redis does not answer."""
        per_window = per_s * self.window_s
        cost = max(events, 1)
        if cost > per_window:
            raise ApiError(
                413,
                "too_large",
                f"{cost} events in one request, and this workspace takes at most "
                f"{per_window} every {self.window_s} s: send smaller batches",
            )
        item = RateLimitItemPerSecond(per_window, self.window_s, namespace=RATE_LIMIT_NAMESPACE)
        try:
            taken = await self._limiter.hit(item, workspace_id, cost=cost)
        except StorageError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc
        if not taken:
            raise rate_limited(per_s, self.window_s)

    async def close(self) -> None:
        await self._pool.aclose()


def rate_limited(per_s: int, retry_after_s: int) -> ApiError:
    """The answer past a workspace's limit. ``Retry-After`` is one window, told without
    asking Redis again: the counter's current window ends within it, and from then on the
    previous window's count weighs less and less, so room comes back (for a full budget
    spent at a window's start, gradually over the next window)."""
    return ApiError(
        429,
        "rate_limited",
        f"this workspace is over its limit of {per_s} events per second; "
        "nothing was queued, retry later",
        headers={"Retry-After": str(retry_after_s)},
    )
