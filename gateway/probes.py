"""The gateway's health answers (docs/operations.md), all from the checks of
``sluice.ops.health.Readiness``: ``/livez`` answers while the process does; ``/readyz``
runs every readiness check; ``/healthz`` (docs/api.md) answers for the Redis and database
parts of them, a combined check of the services, not a liveness probe. All three are in the
OpenAPI document: ``/livez`` and ``/readyz`` (with ``/metrics``) under ``operations``, for
the platform that runs the gateway; ``/healthz`` beside the native API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from sluice.gateway.dependencies import ReadinessDep
from sluice.gateway.responses import JsonResponse
from sluice.ops.health import OK, Readiness


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The checks are made at startup (reading the migrations takes a moment), and their
    connections closed at shutdown."""
    app.state.readiness = Readiness(app.state.gateway.settings)
    try:
        yield
    finally:
        readiness: Readiness | None = getattr(app.state, "readiness", None)
        if readiness is not None:
            readiness.close()
            app.state.readiness = None


router = APIRouter(tags=["operations"], lifespan=_lifespan)
health_router = APIRouter(tags=["native"])  # /healthz: in the API's schema, beside /v1/*


@router.get(
    "/livez",
    summary="Liveness: the gateway process answers (no service is checked)",
    responses={200: {"description": 'The process serves requests: `{"status": "ok"}`.'}},
)
async def livez() -> JsonResponse:
    return JsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: Redis, the broker, the database and its schema answer",
    responses={
        200: {"description": "Every check is `ok`: the gateway can take events."},
        503: {"description": "A check failed: `checks` names it and why."},
    },
)
async def readyz(readiness: ReadinessDep) -> JsonResponse:
    checks = await readiness.check(detail=False)  # the details go to the log
    ready = all(value == OK for value in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@health_router.get(
    "/healthz",
    summary="Services check: Redis and the database answer",
    responses={
        200: {"description": "Redis and the database answer."},
        503: {"description": "Redis or the database does not answer."},
    },
)
async def healthz(readiness: ReadinessDep) -> JsonResponse:
    checks = await readiness.health()
    healthy = all(value == OK for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks},
        status_code=200 if healthy else 503,
    )
