"""The audit of the control plane's writes: a pure ASGI middleware that, once a write
under ``/admin/v1`` by a known token has its status, and before the last of its answer
is sent, records the token, the operation (method and route template), the path and the
status (``sluice.store.admin_audit``): a client that got its answer finds it audited.
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
        recorded = False

        async def record() -> None:
            nonlocal recorded
            token_id = scope.get("state", {}).get("admin_token_id")
            if recorded or token_id is None:
                return
            recorded = True
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

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await record()  # before the answer is complete: a client reads it after
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            await record()  # an answer that never completed
