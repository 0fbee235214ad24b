"""What every vendor adapter shares: errors in the vendor's own shape around the gateway's
body reading, write-key lookup and publishing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import orjson
from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from producer.events import Event
from producer.gateway.app import Gateway
from producer.gateway.body import read_limited
from producer.gateway.errors import ApiError
from producer.gateway.responses import JsonResponse
from worker.definitions import Definition, find_definition


class VendorError(Exception):
    """An error answered with a vendor-shaped body."""

    def __init__(
        self, status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(body))
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}


# (status, message, headers) -> the vendor's error
Fail = Callable[[int, str, dict[str, str] | None], VendorError]


async def render_vendor_error(_request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, VendorError)
    return JsonResponse(exc.body, status_code=exc.status_code, headers=exc.headers)


async def body_bytes(request: Request, limit_bytes: int, fail: Fail) -> bytes:
    try:
        return await read_limited(request, limit_bytes)
    except ApiError as exc:
        raise fail(exc.status_code, exc.message, exc.headers) from exc


def json_body(body: bytes, fail: Fail) -> Any:
    if not body:
        raise fail(400, "the body is empty; send JSON", None)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise fail(
            400, f"malformed JSON: {exc} (string values, timestamps included, must be quoted)", None
        ) from exc


async def workspace_for_key(gateway: Gateway, write_key: str | None, fail: Fail) -> str:
    if not write_key:
        raise fail(401, "missing API key", None)
    try:
        workspace_id = await run_in_threadpool(gateway.keys.workspace_for, write_key)
    except SQLAlchemyError as exc:
        raise fail(503, "the database is unavailable; retry later", {"Retry-After": "5"}) from exc
    if workspace_id is None:
        raise fail(401, "invalid API key", None)
    return workspace_id


async def answer(
    request: Request,
    gateway: Gateway,
    workspace_id: str,
    message_ids: Sequence[str],
    body: dict[str, Any],
) -> JsonResponse:
    """The vendor's success body; with ``Prefer: wait=N`` it also lists the verdicts under
    ``outcomes`` (additive: the vendor's own fields are unchanged)."""
    found, headers = await gateway.outcomes_if_asked(request, workspace_id, message_ids)
    if found is not None:
        body = {**body, "outcomes": [{"message_id": m, **found[m]} for m in message_ids]}
    return JsonResponse(body, headers=headers)


async def publish(gateway: Gateway, events: Sequence[Event], fail: Fail) -> list[str]:
    try:
        return await gateway.publish(events)
    except ApiError as exc:
        raise fail(exc.status_code, exc.message, exc.headers) from exc


async def definition(
    gateway: Gateway,
    fail: Fail,
    workspace_id: str,
    format: Literal["bunce", "clevertap"],
    **match: str,
) -> Definition | None:
    """A workspace's definition, or None; 503 in the vendor's shape if the database is down.
    Found definitions are cached for 30 s; misses are not, so a new definition works at once."""
    key = (workspace_id, format, tuple(sorted(match.items())))

    def load() -> Definition | None:
        return find_definition(gateway.store.engine, workspace_id, format, **match)

    try:
        return await run_in_threadpool(gateway.definitions.get, key, load)
    except SQLAlchemyError as exc:
        raise fail(503, "the database is unavailable; retry later", {"Retry-After": "5"}) from exc


def make_event(fields: dict[str, Any], fail: Fail, status: int = 400) -> Event:
    from pydantic import ValidationError

    from producer.envelope import describe_validation_error

    try:
        return Event.model_validate(fields)
    except ValidationError as exc:
        raise fail(status, describe_validation_error(exc), None) from exc
