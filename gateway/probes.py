"""Probes for orchestrators (docs/operations.md): ``/livez`` answers while the process
does; ``/readyz`` runs the readiness checks of ``sluice.ops.health``. Both stay out of
the OpenAPI schema: they are for the platform that runs the gateway, not for API clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

from sluice.gateway.responses import JsonResponse
from sluice.gateway.state import gateway_of
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


router = APIRouter(include_in_schema=False, lifespan=_lifespan)


@router.get("/livez")
async def livez() -> JsonResponse:
    return JsonResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JsonResponse:
    checks = await _readiness(request).check()
    ready = all(value == OK for value in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


def _readiness(request: Request) -> Readiness:
    """The app's checks; made on first use where the app's lifespan did not run."""
    state = request.app.state
    readiness: Readiness | None = getattr(state, "readiness", None)
    if readiness is None:
        readiness = state.readiness = Readiness(gateway_of(request).settings)
    return readiness
