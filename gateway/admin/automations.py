"""``/admin/v1/workspaces/{ws}/automations``: listed, added (a webhook's signing secret in
the 201, once), shown, enabled or disabled, deleted, and a webhook's secret rotated,
through the functions ``sluice automation`` calls (``sluice.store.automations``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from sluice.actions import Action
from sluice.gateway.admin.access import ScopedWorkspace
from sluice.gateway.admin.pages import Cursor, Limit, after_time_and_id, page
from sluice.gateway.admin.problems import blocking, invalid, not_found
from sluice.gateway.dependencies import DatabaseDep, SettingsDep
from sluice.gateway.responses import JsonResponse
from sluice.store.automations import (
    add_automation,
    delete_automation,
    disable_in_workspace,
    enable_automation,
    list_automations,
    rotate_secret,
    show_automation,
)

router = APIRouter(prefix="/workspaces/{workspace_id}/automations", tags=["admin: automations"])
OPERATOR_REASON = "disabled through the control plane"


class WebhookAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["webhook"]
    url: str = Field(min_length=1, max_length=2048)


class TaskAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["task"]
    name: str = Field(min_length=1, max_length=200)
    queue: str | None = Field(default=None, max_length=200)


class BulletinAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bulletin"]


class NewAutomation(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    on: str = Field(min_length=1, max_length=200, description="the event name that fires it")
    where: dict[str, str] = Field(default_factory=dict, description="property: value, all equal")
    action: Annotated[WebhookAction | TaskAction | BulletinAction, Field(discriminator="type")]


class AutomationChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


async def _shown(database: object, workspace_id: str, automation_id: str) -> JsonResponse:
    found = await blocking(show_automation, database, workspace_id, automation_id[:64])
    if found is None:
        raise not_found("automation")
    return JsonResponse(found)


@router.get("", summary="The workspace's automations, newest first, with trigger counts")
async def listed(
    workspace_id: ScopedWorkspace, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> JsonResponse:
    after = after_time_and_id(cursor)
    found = await blocking(
        lambda: list_automations(
            database, workspace_id, newest_first=True, limit=limit + 1, after=after
        )
    )
    chosen = found[:limit]
    last = [chosen[-1]["created_at"], chosen[-1]["automation_id"]] if len(found) > limit else None
    return JsonResponse(page(chosen, last))


@router.post("", status_code=201, summary="Add an automation (a webhook's secret: shown once)")
async def add(
    body: NewAutomation, workspace_id: ScopedWorkspace, database: DatabaseDep, settings: SettingsDep
) -> JsonResponse:
    action = body.action
    target = action.url if isinstance(action, WebhookAction) else None
    target = action.name if isinstance(action, TaskAction) else target
    queue = action.queue if isinstance(action, TaskAction) else None
    try:
        made = await blocking(
            lambda: add_automation(
                database,
                workspace_id,
                body.on,
                Action(action.type),
                target=target,
                queue=queue,
                filters=body.where,
                allow_private_webhooks=settings.allow_private_webhooks,
            )
        )
    except LookupError as exc:
        raise not_found("workspace") from exc
    except ValueError as exc:
        raise invalid([{"field": "action", "message": str(exc)}], str(exc)) from exc
    shown = await blocking(show_automation, database, workspace_id, made.id)
    return JsonResponse({**(shown or {}), "secret": made.secret}, status_code=201)


@router.get("/{automation_id}", summary="One automation, with its trigger counts")
async def show(
    automation_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> JsonResponse:
    return await _shown(database, workspace_id, automation_id)


@router.patch("/{automation_id}", summary="Enable or disable an automation")
async def change(
    body: AutomationChange, automation_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> JsonResponse:
    automation_id = automation_id[:64]
    if body.enabled:
        await blocking(enable_automation, database, workspace_id, automation_id)
    else:
        await blocking(disable_in_workspace, database, workspace_id, automation_id, OPERATOR_REASON)
    return await _shown(database, workspace_id, automation_id)  # 404 if there is none


@router.delete("/{automation_id}", status_code=204, summary="Delete an automation and its triggers")
async def remove(
    automation_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> Response:
    if not await blocking(delete_automation, database, workspace_id, automation_id[:64]):
        raise not_found("automation")
    return Response(status_code=204)


@router.post("/{automation_id}/secret/rotate", summary="A new signing secret for a webhook")
async def new_secret(
    automation_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> JsonResponse:
    try:
        secret = await blocking(rotate_secret, database, workspace_id, automation_id[:64])
    except ValueError as exc:
        raise invalid([{"field": "automation_id", "message": str(exc)}], str(exc)) from exc
    if secret is None:
        raise not_found("automation")
    return JsonResponse({"automation_id": automation_id[:64], "secret": secret})
