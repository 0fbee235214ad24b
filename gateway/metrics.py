"""``GET /metrics`` (the Prometheus text format) and the middleware that counts the
gateway's own requests (docs/metrics.md).

The counters are cluster-wide: workers, deliverers and every gateway process add to
hashes in Redis (``sluice.ops.metrics``), and a scrape of any gateway reads them all.
A gateway counts its requests in memory and adds them to Redis about once a second from a
background task, never with a round trip per request; a request answered less than a
second before a process is killed (not stopped) is lost with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.gateway.dependencies import DatabaseDep, RedisDep, SettingsDep
from sluice.ops.metrics.depth import ScrapeGauges
from sluice.ops.metrics.families import HTTP_REQUESTS, HTTP_SECONDS
from sluice.ops.metrics.prometheus import SluiceCollector
from sluice.ops.metrics.tally import Tally, flush

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])
FLUSH_S = 1.0
UNMATCHED_ROUTE = "unmatched"  # no route took the request (a 404): the path is not a label
# The method label's values: a client may send any token as a method, and each new one
# would be a new series kept in Redis for ever.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


async def metrics_registry(
    request: Request, settings: SettingsDep, database: DatabaseDep, client: RedisDep
) -> CollectorRegistry:
    """The app's own registry (not prometheus_client's global one, whose per-process
    metrics would differ from one gateway process to the next), made at the first scrape."""
    state = request.app.state
    registry: CollectorRegistry | None = getattr(state, "metrics_registry", None)
    if registry is None:
        gauges = ScrapeGauges(
            settings.broker_url,
            database,
            broker_redis=client if settings.broker_url == settings.redis_url else None,
            timeout_s=settings.publish_timeout_s,
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SluiceCollector(client, gauges.collect))
        state.metrics_registry = registry
    return registry


RegistryDep = Annotated[CollectorRegistry, Depends(metrics_registry)]


@router.get(
    "/metrics",
    summary="Prometheus metrics of the whole cluster",
    response_class=Response,
    responses={
        200: {
            "description": "Every Sluice metric, in the Prometheus text format.",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        },
        503: {
            "description": "Redis, which holds the counters, does not answer.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
async def metrics(registry: RegistryDep) -> Response:
    """Every Sluice metric, cluster-wide; 503 (and a line saying why) while Redis, which
    holds the counters, does not answer."""
    try:
        body = await run_in_threadpool(generate_latest, registry)
    except Exception as exc:
        log.warning("GET /metrics: the counters could not be read: %s", exc)
        return Response(  # the error's class only: its message names hosts and ports
            f"metrics unavailable: {type(exc).__name__} (the gateway's log says more)\n",
            status_code=503,
            media_type="text/plain; charset=utf-8",
            headers={"Retry-After": "5"},
        )
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Pure ASGI middleware: counts each HTTP request by route template (``/v1/events/
    {message_id}``, never the path itself), method and status, with its duration. The
    counts gather in memory and a background task adds them to Redis every ``flush_s``
    (started with the first request; a last flush runs at shutdown). Counts Redis did not
    take are kept for the next flush."""

    def __init__(self, app: ASGIApp, flush_s: float = FLUSH_S) -> None:
        self.app = app
        self.flush_s = flush_s
        self._tally = Tally()
        self._flusher: asyncio.Task[None] | None = None
        self._owner: Any = None  # the Starlette app whose gateway holds the Redis client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._on_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._flusher is None:
            self._owner = scope.get("app")
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        started = time.perf_counter()
        status = 500  # unless a response starts: what the client gets when the app fails

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path_format", None) or UNMATCHED_ROUTE
            method = scope["method"] if scope["method"] in METHODS else OTHER_METHOD
            self._tally.count(HTTP_REQUESTS, (route, method, str(status)))
            self._tally.observe(HTTP_SECONDS, (route, method), time.perf_counter() - started)

    def _on_shutdown(self, receive: Receive) -> Receive:
        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self._stop()  # before the app closes its Redis client
            return message

        return receiving

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self._flush()
            except Exception:  # the next second tries again; requests never see it
                log.exception("request metrics could not be flushed")

    async def _flush(self) -> None:
        tally, self._tally = self._tally, Tally()
        if not tally or self._owner is None:
            return
        client = self._owner.state.gateway.redis
        if not await run_in_threadpool(flush, client, tally):
            self._tally.merge(tally)

    async def _stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self._flush()
