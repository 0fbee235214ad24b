"""Errors the gateway answers with, in the native API's JSON shape::

{"success": false, "error": "<code>", "message": "<what to fix>", "field": "<path>"?}
"""

from __future__ import annotations

import logging

from fastapi import Request, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from sluice.gateway.responses import JsonResponse
from sluice.producer.envelope import describe_validation_error

log = logging.getLogger(__name__)
# What the metrics count for a request whose client left before it was answered (the
# status nginx logs for it too); no client ever sees it.
CLIENT_CLOSED_REQUEST = 499


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def bad_request(message: str, *, field: str | None = None, code: str = "invalid") -> ApiError:
    return ApiError(400, code, message, field=field)


def invalid_fields(exc: ValidationError, *, prefix: str = "") -> ApiError:
    """A 400 naming the first offending field (``prefix`` places it in the body)."""
    errors = exc.errors(include_url=False)
    location = ".".join(str(part) for part in errors[0]["loc"]) if errors else ""
    field = f"{prefix}{location}".rstrip(".") or None
    return bad_request(describe_validation_error(exc), field=field)


def too_large(message: str) -> ApiError:
    return ApiError(413, "too_large", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Basic realm="sluice"'}
    )


def queue_unavailable(retry_after_s: int = 5) -> ApiError:
    return ApiError(
        503,
        "queue_unavailable",
        "the event queue is unavailable; nothing was queued, retry later",
        headers={"Retry-After": str(retry_after_s)},
    )


async def render_api_error(_request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, ApiError)
    body: dict[str, object] = {"success": False, "error": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    return JsonResponse(body, status_code=exc.status_code, headers=exc.headers)


async def render_client_gone(request: Request, exc: Exception) -> Response:
    """The client went away before its body was read: one info line, nothing queued, and
    a 499 for the metrics (the server sends nothing to a closed connection)."""
    assert isinstance(exc, ClientDisconnect)
    log.info(
        "%s %s: the client disconnected before its body was read", request.method, request.url.path
    )
    return Response(status_code=CLIENT_CLOSED_REQUEST)
