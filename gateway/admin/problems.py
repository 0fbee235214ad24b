"""Errors of the control plane, as ``application/problem+json`` (RFC 9457)::

    {"type": "urn:sluice:problem:<code>", "title": "...", "status": 404, "detail": "...",
     "errors": [{"field": "settings.rate_limit_per_s", "message": "..."}]}

``errors`` comes with a 422 and names each offending field."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from sluice.gateway.blocking import from_database
from sluice.gateway.errors import ApiError
from sluice.gateway.responses import JsonResponse

ADMIN_PREFIX = "/admin/v1"
PROBLEM_JSON = "application/problem+json"
T = TypeVar("T")


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "type": f"urn:sluice:problem:{self.code}",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            found["errors"] = self.errors
        return found


def not_found(what: str) -> Problem:
    return Problem(404, "not_found", f"no {what} here")


def invalid(errors: list[dict[str, str]], detail: str = "the request is invalid") -> Problem:
    return Problem(422, "invalid", detail, errors=errors)


def field_errors(
    exc: ValidationError | RequestValidationError, *, skip: int = 0
) -> list[dict[str, str]]:
    """Each error as ``{"field": "a.b", "message": ...}`` (``skip`` drops the leading parts
    of a location, such as FastAPI's ``body``)."""
    return [
        {
            "field": ".".join(str(part) for part in error["loc"][skip:]) or "(body)",
            "message": error["msg"],
        }
        for error in exc.errors()
    ]


async def render_problem(_request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, Problem)
    return JsonResponse(
        exc.body(), status_code=exc.status, headers=exc.headers, media_type=PROBLEM_JSON
    )


async def blocking(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on a worker thread; the database's errors as problems (a value it
    refuses: 400; an outage: 503 with Retry-After)."""
    try:
        return await from_database(call, *args)
    except ApiError as exc:
        raise Problem(exc.status_code, exc.code, exc.message, headers=exc.headers) from exc


async def render_validation_error(request: Request, exc: Exception) -> Any:
    """A request FastAPI could not parse: a 422 problem naming the fields under
    ``/admin/``; FastAPI's own answer elsewhere."""
    from fastapi.exception_handlers import request_validation_exception_handler

    assert isinstance(exc, RequestValidationError)
    if not request.url.path.startswith(ADMIN_PREFIX + "/"):
        return await request_validation_exception_handler(request, exc)
    return await render_problem(request, invalid(field_errors(exc, skip=1)))
