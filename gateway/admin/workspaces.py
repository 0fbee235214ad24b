"""``/admin/v1/workspaces``: create (cluster-wide tokens), list, show, configure, and
rotate a workspace's write key — the functions ``sluice workspace`` calls
(``sluice.store.workspaces``, ``sluice.store.write_keys``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from sluice.gateway.admin.access import AdminToken, ClusterToken, ScopedWorkspace
from sluice.gateway.admin.pages import Cursor, Limit, after_time_and_id, page
from sluice.gateway.admin.problems import blocking, field_errors, invalid, not_found
from sluice.gateway.dependencies import DatabaseDep, RedisDep
from sluice.gateway.responses import JsonResponse
from sluice.ops.known_workspaces import create_known_workspace
from sluice.store.workspaces import MAX_WORKSPACE_NAME_CHARS, configure_workspace
from sluice.store.write_keys import DEFAULT_GRACE_S, announce_rotation, list_workspaces, rotate_key

router = APIRouter(prefix="/workspaces", tags=["admin: workspaces"])
MAX_GRACE_S = 10 * 365 * 86_400  # ten years: longer is no grace period but a second key


class NewWorkspaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_WORKSPACE_NAME_CHARS)


class WorkspaceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = Field(
        description="the keys `sluice workspace configure` takes, e.g. rate_limit_per_s"
    )


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_s: int = Field(
        default=DEFAULT_GRACE_S, ge=0, le=MAX_GRACE_S, description="seconds old keys still work"
    )


async def one_workspace(database: Any, workspace_id: str) -> dict[str, Any]:
    found = await blocking(lambda: list_workspaces(database, only=[workspace_id]))
    if not found:
        raise not_found("workspace")
    return found[0]


@router.post("", status_code=201, summary="Create a workspace (cluster-wide tokens)")
async def create(
    body: NewWorkspaceBody, _grant: ClusterToken, database: DatabaseDep, client: RedisDep
) -> JsonResponse:
    try:
        created, _known = await blocking(create_known_workspace, database, client, body.name)
    except ValueError as exc:
        raise invalid([{"field": "name", "message": str(exc)}]) from exc
    return JsonResponse(
        {"workspace_id": created.workspace_id, "name": body.name, "write_key": created.write_key},
        status_code=201,
    )


@router.get("", summary="The workspaces the token reaches, newest first")
async def listed(
    grant: AdminToken, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> JsonResponse:
    after = after_time_and_id(cursor)
    only = None if grant.workspaces is None else list(grant.workspaces)
    found = await blocking(lambda: list_workspaces(database, only=only))
    newest_first = sorted(found, key=lambda w: (w["created_at"], w["workspace_id"]), reverse=True)
    if after is not None:
        newest_first = [w for w in newest_first if (w["created_at"], w["workspace_id"]) < after]
    chosen = newest_first[:limit]
    more = len(newest_first) > limit
    last = [chosen[-1]["created_at"], chosen[-1]["workspace_id"]] if more else None
    return JsonResponse(page(chosen, last))


@router.get("/{workspace_id}", summary="One workspace: its keys' state and its settings")
async def show(workspace_id: ScopedWorkspace, database: DatabaseDep) -> JsonResponse:
    return JsonResponse(await one_workspace(database, workspace_id))


@router.patch("/{workspace_id}", summary="Change a workspace's settings (merged)")
async def change(
    body: WorkspaceChange, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> JsonResponse:
    pairs = {key: str(value) for key, value in body.settings.items()}
    try:
        await blocking(configure_workspace, database, workspace_id, pairs)
    except ValidationError as exc:
        raise invalid(
            [{**e, "field": f"settings.{e['field']}"} for e in field_errors(exc)]
        ) from exc
    except ValueError as exc:
        raise invalid([{"field": "settings", "message": str(exc)}]) from exc
    except LookupError as exc:  # deleted meanwhile
        raise not_found("workspace") from exc
    return JsonResponse(await one_workspace(database, workspace_id))


@router.post("/{workspace_id}/write-key/rotate", summary="Give the workspace a new write key")
async def rotate(
    workspace_id: ScopedWorkspace,
    database: DatabaseDep,
    client: RedisDep,
    body: Rotation | None = None,
) -> JsonResponse:
    grace_s = (body or Rotation()).grace_s
    try:
        rotated = await blocking(rotate_key, database, workspace_id, grace_s)
    except LookupError as exc:  # deleted meanwhile
        raise not_found("workspace") from exc
    announced = await run_in_threadpool(announce_rotation, client, workspace_id)
    ends = rotated.old_key_expires_at
    return JsonResponse(
        {
            "workspace_id": rotated.workspace_id,
            "write_key": rotated.write_key,
            "old_key_expires_at": None if ends is None else ends.isoformat(),
            "gateways_told": announced,
        }
    )
