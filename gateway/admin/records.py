"""A workspace's records over the control plane: an erasure (``POST …/erasures``), the
export (``GET …/export``, NDJSON streamed) and the counts (``GET …/stats``), through the
functions ``sluice contact delete``, ``sluice events export`` and ``sluice stats`` call."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import redis
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sluice.gateway.admin.access import AdminToken, ScopedWorkspace
from sluice.gateway.admin.pages import utc_query
from sluice.gateway.admin.problems import Problem, blocking, invalid, not_found
from sluice.gateway.dependencies import DatabaseDep, RedisDep
from sluice.gateway.responses import JsonResponse
from sluice.ops.erasure import ErasureIncompleteError, erase_contact
from sluice.ops.erasure_match import IdentifierKind
from sluice.ops.export import ExportSelection, export_ndjson
from sluice.ops.stats import outcome_counts
from sluice.rules import Status

router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["admin: records"])
# How long an erasure over HTTP waits for the person's webhooks under way (the command
# line waits 300 s); past it, 409 with Retry-After and nothing is erased.
LEASE_WAIT_S = 20.0


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, min_length=1, max_length=320)
    user_id: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def one_identifier(self) -> ErasureRequest:
        if (self.email is None) == (self.user_id is None):
            raise ValueError("give exactly one of email, user_id")
        return self


@router.post("/erasures", summary="Erase a person and everything stored of them")
async def erasure(
    body: ErasureRequest,
    workspace_id: ScopedWorkspace,
    grant: AdminToken,
    database: DatabaseDep,
    client: RedisDep,
) -> JsonResponse:
    kind: IdentifierKind = "email" if body.email is not None else "user_id"
    identifier = body.email if body.email is not None else body.user_id
    assert identifier is not None
    try:
        report = await blocking(
            lambda: erase_contact(
                database,
                client,
                workspace_id,
                kind,
                identifier,
                requested_by=f"admin token {grant.token_id} ({grant.name})",
                lease_wait_s=LEASE_WAIT_S,
            )
        )
    except LookupError as exc:
        raise not_found("workspace") from exc
    except ErasureIncompleteError as exc:
        raise Problem(409, "deliveries_under_way", str(exc), headers={"Retry-After": "30"}) from exc
    except redis.RedisError as exc:
        raise Problem(
            503,
            "redis_unavailable",
            "Redis is unavailable; nothing was erased, retry later",
            headers={"Retry-After": "5"},
        ) from exc
    return JsonResponse(report.as_dict())


@router.get("/export", summary="The workspace's events and outcomes, as NDJSON")
async def export(
    workspace_id: ScopedWorkspace,
    database: DatabaseDep,
    since: Annotated[datetime | None, Query(description="event time at or after")] = None,
    until: Annotated[datetime | None, Query(description="event time before")] = None,
    status: Status | None = None,
) -> StreamingResponse:
    selection = ExportSelection(
        workspace_id,
        since=utc_query(since, "since"),
        until=utc_query(until, "until"),
        status=status,
        with_triggers=True,
    )
    try:
        chunks = await blocking(export_ndjson, database, selection)  # checks first
    except ValueError as exc:
        raise invalid([{"field": "status", "message": str(exc)}], str(exc)) from exc
    return StreamingResponse(chunks, media_type="application/x-ndjson")


@router.get("/stats", summary="The workspace's outcomes counted by status and reason")
async def stats(workspace_id: ScopedWorkspace, database: DatabaseDep) -> JsonResponse:
    return JsonResponse(await blocking(outcome_counts, database, workspace_id))
