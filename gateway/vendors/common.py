"""What every vendor adapter shares: errors in the vendor's own shape around the gateway's
body reading, write-key lookup and publishing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import orjson
from fastapi import Request

from sluice.gateway.auth import WriteKeys, workspace_for
from sluice.gateway.body import read_limited
from sluice.gateway.definitions import DefinitionLookup
from sluice.gateway.errors import ApiError
from sluice.gateway.intake import EventQueue
from sluice.gateway.outcomes import OutcomeReader
from sluice.gateway.responses import JsonResponse
from sluice.producer.events import Event
from sluice.store.definitions import Definition

T = TypeVar("T")


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


async def vendor_shaped(fail: Fail, step: Awaitable[T]) -> T:
    """Run a shared gateway step; its error (``ApiError``) is answered in the vendor's shape."""
    try:
        return await step
    except ApiError as exc:
        raise fail(exc.status_code, exc.message, exc.headers) from exc


async def body_bytes(request: Request, limit_bytes: int, fail: Fail) -> bytes:
    return await vendor_shaped(fail, read_limited(request, limit_bytes))


def json_body(body: bytes, fail: Fail) -> Any:
    if not body:
        raise fail(400, "the body is empty; send JSON", None)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise fail(
            400, f"malformed JSON: {exc} (string values, timestamps included, must be quoted)", None
        ) from exc


async def workspace_for_key(
    keys: WriteKeys, write_key: str | None, fail: Fail, *, refused: str = "invalid API key"
) -> str:
    """The key's workspace; 401 with ``refused`` when it opens none (a route that also
    checks an account answers that mismatch with the same words: no key-validity oracle)."""
    if not write_key:
        raise fail(401, "missing API key", None)
    workspace_id = await vendor_shaped(fail, workspace_for(keys, write_key))
    if workspace_id is None:
        raise fail(401, refused, None)
    return workspace_id


async def answer(
    request: Request,
    outcomes: OutcomeReader,
    workspace_id: str,
    message_ids: Sequence[str],
    body: dict[str, Any],
) -> JsonResponse:
    """The vendor's success body; with ``Prefer: wait=N`` it also lists the verdicts under
    ``outcomes`` (additive: the vendor's own fields are unchanged)."""
    found, headers = await outcomes.outcomes_if_asked(request, workspace_id, message_ids)
    if found is not None:
        body = {**body, "outcomes": [{"message_id": m, **found[m]} for m in message_ids]}
    return JsonResponse(body, headers=headers)


async def definition(
    definitions: DefinitionLookup,
    fail: Fail,
    workspace_id: str,
    format: Literal["bunce", "clevertap"],
    **match: str,
) -> Definition | None:
    return await vendor_shaped(fail, definitions.find(workspace_id, format, **match))


async def queue_event(
    request: Request,
    queue: EventQueue,
    outcomes: OutcomeReader,
    fail: Fail,
    fields: dict[str, Any],
    reply: dict[str, Any],
    *,
    invalid_status: int = 400,
) -> JsonResponse:
    """Validate one event, queue it, and answer with the vendor's ``reply`` plus its
    ``message_id`` (and the verdict, with ``Prefer: wait``)."""
    return await queue_built_event(
        request, queue, outcomes, fail, make_event(fields, fail, invalid_status), reply
    )


async def queue_built_event(
    request: Request,
    queue: EventQueue,
    outcomes: OutcomeReader,
    fail: Fail,
    event: Event,
    reply: dict[str, Any],
) -> JsonResponse:
    (message_id,) = await vendor_shaped(fail, queue.publish([event]))
    return await answer(
        request, outcomes, event.workspace_id, [message_id], {**reply, "message_id": message_id}
    )


def make_event(fields: dict[str, Any], fail: Fail, status: int = 400) -> Event:
    from pydantic import ValidationError

    from sluice.producer.envelope import describe_validation_error

    try:
        return Event.model_validate(fields)
    except ValidationError as exc:
        raise fail(status, describe_validation_error(exc), None) from exc
