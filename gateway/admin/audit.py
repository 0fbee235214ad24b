"""The audit of the control plane's writes: a pure ASGI middleware that, once a write
under ``/admin/v1`` has been answered to a known token, records the token, the operation
(method and route template), the path and the status (``sluice.store.admin_audit``).
Requests without a working token are not recorded: they changed nothing, and recording
them would let anyone fill the table."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.gateway.admin.access import WRITES
from sluice.gateway.admin.problems import ADMIN_PREFIX
from sluice.store.admin_audit import record_audit

log = logging.getLogger(__name__)


class AuditWrites:
    def __init__(self, app: ASGIApp, database: Engine) -> None:
        self.app = app
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITES
            or not scope["path"].startswith(ADMIN_PREFIX + "/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            token_id = scope.get("state", {}).get("admin_token_id")
            if token_id is not None:
                route = getattr(scope.get("route"), "path_format", None)
                if route is None or not route.startswith(ADMIN_PREFIX):  # within its router
                    route = ADMIN_PREFIX + (route or scope["path"].removeprefix(ADMIN_PREFIX))
                try:
                    await run_in_threadpool(
                        record_audit,
                        self.database,
                        token_id,
                        f"{scope['method']} {route}",
                        scope["path"],
                        status,
                    )
                except Exception as exc:  # the write itself is done; say so loudly
                    log.error("audit: %s %s not recorded: %s", scope["method"], scope["path"], exc)
