"""What the route handlers need, as FastAPI dependencies: a handler declares a parameter
of one of the ``*Dep`` types (or ``BasicAuthWorkspace``) and FastAPI hands it over.

The collaborators themselves are built once per app (``build_gateway``) and kept on
``app.state``; each dependency reads its part from there, per request, with no round trip
(the small views it makes, such as ``EventQueue``, only hold what was built). All are
``async`` so that FastAPI runs them on the event loop, not on a worker thread."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request
from sqlalchemy import Engine

from sluice.gateway.auth import WriteKeys, workspace_from_basic_auth
from sluice.gateway.definitions import DefinitionLookup
from sluice.gateway.intake import EventQueue, RateLimits
from sluice.gateway.outcomes import OutcomeReader
from sluice.gateway.state import Gateway
from sluice.ops.health import Readiness
from sluice.settings import Settings


def collaborators(request: Request) -> Gateway:
    """What ``build_gateway`` made for this request's app."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def settings(request: Request) -> Settings:
    return collaborators(request).settings


async def database(request: Request) -> Engine:
    return collaborators(request).database


async def redis_client(request: Request) -> redis.Redis:
    """The Redis connection pool that serves traffic (pending marks, counters)."""
    return collaborators(request).redis


async def write_keys(request: Request) -> WriteKeys:
    """The write-key cache in front of the database."""
    return collaborators(request).keys


async def rate_limits(request: Request) -> RateLimits:
    """Each workspace's rate limit (cached) and the limiter counting in Redis."""
    gateway = collaborators(request)
    return RateLimits(gateway.rate_limits, gateway.limiter, gateway.database)


async def event_queue(request: Request, limits: RateLimitsDep) -> EventQueue:
    """Publishing a request's events: backpressure, the rate limit, the publisher."""
    gateway = collaborators(request)
    return EventQueue(gateway.depth, limits, gateway.publisher, gateway.committer)


async def definitions(request: Request) -> DefinitionLookup:
    gateway = collaborators(request)
    return DefinitionLookup(gateway.definitions, gateway.database)


async def outcomes(request: Request) -> OutcomeReader:
    gateway = collaborators(request)
    return OutcomeReader(gateway.database, gateway.publisher.marks, gateway.waits)


async def readiness(request: Request, settings: SettingsDep) -> Readiness:
    """The app's health checks (``sluice.gateway.probes`` makes them at startup); made on
    first use where the app's lifespan did not run."""
    state = request.app.state
    checks: Readiness | None = getattr(state, "readiness", None)
    if checks is None:
        checks = state.readiness = Readiness(settings)
    return checks


async def basic_auth_workspace(request: Request, keys: WriteKeysDep) -> str:
    """The workspace whose write key is the HTTP Basic user name (Segment's auth); 401
    without a working one, 503 while the database cannot say."""
    return await workspace_from_basic_auth(keys, request.headers.get("authorization"))


SettingsDep = Annotated[Settings, Depends(settings)]
DatabaseDep = Annotated[Engine, Depends(database)]
RedisDep = Annotated[redis.Redis, Depends(redis_client)]
WriteKeysDep = Annotated[WriteKeys, Depends(write_keys)]
RateLimitsDep = Annotated[RateLimits, Depends(rate_limits)]
EventQueueDep = Annotated[EventQueue, Depends(event_queue)]
DefinitionsDep = Annotated[DefinitionLookup, Depends(definitions)]
OutcomesDep = Annotated[OutcomeReader, Depends(outcomes)]
ReadinessDep = Annotated[Readiness, Depends(readiness)]
BasicAuthWorkspace = Annotated[str, Depends(basic_auth_workspace)]
