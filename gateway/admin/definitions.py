"""``/admin/v1/workspaces/{ws}/definitions``: Bunce events and CleverTap business events,
listed, added, shown and deleted through the functions ``sluice definition`` calls
(``sluice.store.definitions``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from sluice.gateway.admin.access import ScopedWorkspace
from sluice.gateway.admin.pages import Cursor, Limit, after_time_and_id, page
from sluice.gateway.admin.problems import Problem, blocking, invalid, not_found
from sluice.gateway.dependencies import DatabaseDep
from sluice.gateway.responses import JsonResponse
from sluice.store.definitions import (
    add_definition,
    delete_definition,
    list_definitions,
    show_definition,
)

router = APIRouter(prefix="/workspaces/{workspace_id}/definitions", tags=["admin: definitions"])


class NewDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["bunce", "clevertap"]
    name: str = Field(min_length=1, max_length=200)
    params: dict[str, str] = Field(
        default_factory=dict,
        description="bunce: parameter -> string|number|integer|boolean|timestamp",
    )
    required: list[str] = Field(default_factory=list, description="clevertap: required properties")
    id: str | None = Field(default=None, description="keep an id from elsewhere (a Bunce event id)")


@router.get("", summary="The workspace's definitions, newest first")
async def listed(
    workspace_id: ScopedWorkspace, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> JsonResponse:
    after = after_time_and_id(cursor)
    found = await blocking(
        lambda: list_definitions(database, workspace_id, limit=limit + 1, after=after)
    )
    chosen = found[:limit]
    last = [chosen[-1]["created_at"], chosen[-1]["definition_id"]] if len(found) > limit else None
    return JsonResponse(page(chosen, last))


@router.post("", status_code=201, summary="Add a definition")
async def add(
    body: NewDefinition, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> JsonResponse:
    try:
        made = await blocking(
            lambda: add_definition(
                database,
                workspace_id,
                body.format,
                body.name,
                params=body.params,
                required=body.required,
                definition_id=body.id,
            )
        )
    except LookupError as exc:
        raise not_found("workspace") from exc
    except ValueError as exc:
        if "exists already" in str(exc):
            raise Problem(409, "conflict", str(exc)) from exc
        raise invalid([{"field": "(body)", "message": str(exc)}], str(exc)) from exc
    shown = await blocking(show_definition, database, workspace_id, made.definition_id)
    return JsonResponse(shown, status_code=201)


@router.get("/{definition_id}", summary="One definition")
async def show(
    definition_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> JsonResponse:
    found = await blocking(show_definition, database, workspace_id, definition_id[:64])
    if found is None:
        raise not_found("definition")
    return JsonResponse(found)


@router.delete("/{definition_id}", status_code=204, summary="Delete a definition")
async def remove(
    definition_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> Response:
    if not await blocking(delete_definition, database, workspace_id, definition_id[:64]):
        raise not_found("definition")
    return Response(status_code=204)
