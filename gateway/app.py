"""The gateway application factory: the routers of the native API and of each vendor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from sluice.gateway import admin, metrics, native, probes
from sluice.gateway.docs_ui import add_docs
from sluice.gateway.errors import ApiError, render_api_error, render_client_gone
from sluice.gateway.key_notices import listen_for_rotations
from sluice.gateway.security import declare_joined
from sluice.gateway.state import build_gateway
from sluice.gateway.vendors import bento, bunce, clevertap, platformly, userevent
from sluice.gateway.vendors.common import VendorError, render_vendor_error
from sluice.gc_tuning import tune_collector
from sluice.logs import OneLineRecord
from sluice.settings import Settings
from sluice.subscriptions import stop_listener


def create_app(settings: Settings | None = None) -> FastAPI:
    gateway = build_gateway(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Key rotations reach this process's key cache at once (sluice.gateway.key_notices).
        notices = asyncio.create_task(
            listen_for_rotations(gateway.settings.redis_url, gateway.keys.reload)
        )
        yield
        await stop_listener(notices)
        if gateway.committer is not None:
            await gateway.committer.drain()
        gateway.close()
        await gateway.limiter.close()

    app = FastAPI(
        title="Sluice",
        version="0.1.0",
        summary="Event ingestion: a Segment-compatible native API and five vendor formats.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's files instead (sluice.gateway.docs_ui)
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks ask the OTel API for its providers on every
        # request, a tenth of the gateway's CPU under load (bench/RESULTS.md): off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = gateway
    add_docs(app)
    app.add_exception_handler(ApiError, render_api_error)
    app.add_exception_handler(VendorError, render_vendor_error)
    app.add_exception_handler(ClientDisconnect, render_client_gone)
    app.add_middleware(metrics.RequestMetrics)
    app.include_router(metrics.router)
    app.include_router(probes.router)
    app.include_router(native.router)
    app.include_router(probes.health_router)
    for vendor in (bunce, userevent, clevertap, bento, platformly):
        app.include_router(vendor.router)
    if gateway.settings.admin_api:
        admin.install(app)
    declare_joined(app)
    return app


def create_server_app() -> FastAPI:
    """The app of a gateway process (``sluice gateway``): the settings from the
    environment, and the collector tuned for a server once the app exists. Tests that
    build an app in their own process use ``create_app``, which leaves the collector be."""
    settings = Settings()
    if settings.log_format == "text":  # a process uvicorn started (--workers) sets it here
        logging.setLogRecordFactory(OneLineRecord)
    app = create_app(settings)
    tune_collector()
    return app
