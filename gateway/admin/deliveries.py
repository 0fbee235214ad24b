"""An automation's deliveries (``GET …/automations/{id}/deliveries``: its triggers with
their attempts) and a trigger made due again (``POST …/triggers/{id}/retry``), through
``sluice.store.views`` and ``sluice.store.automations``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from sluice.gateway.admin.access import ScopedWorkspace
from sluice.gateway.admin.pages import Cursor, Limit, after_time_and_id, page
from sluice.gateway.admin.problems import Problem, blocking, not_found
from sluice.gateway.dependencies import DatabaseDep, RedisDep
from sluice.gateway.responses import JsonResponse
from sluice.store.automations import RetryRefusal, TriggerStatus, retry_trigger, show_automation
from sluice.store.views import deliveries_of
from sluice.wakeups import wake_deliverers

router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["admin: deliveries"])


@router.get(
    "/automations/{automation_id}/deliveries", summary="An automation's triggers and attempts"
)
async def deliveries(
    automation_id: str,
    workspace_id: ScopedWorkspace,
    database: DatabaseDep,
    status: TriggerStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JsonResponse:
    after = after_time_and_id(cursor)
    automation_id = automation_id[:64]
    if await blocking(show_automation, database, workspace_id, automation_id) is None:
        raise not_found("automation")
    found = await blocking(
        lambda: deliveries_of(
            database,
            workspace_id,
            automation_id,
            status=None if status is None else str(status),
            limit=limit + 1,
            after=after,
        )
    )
    chosen = found[:limit]
    last = [chosen[-1]["created_at"], chosen[-1]["trigger_id"]] if len(found) > limit else None
    return JsonResponse(page(chosen, last))


@router.post("/triggers/{trigger_id}/retry", summary="Make a trigger due again now")
async def retry(
    trigger_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep, client: RedisDep
) -> JsonResponse:
    refusal = await blocking(retry_trigger, database, workspace_id, trigger_id[:64])
    if refusal is RetryRefusal.NOT_FOUND:
        raise not_found("trigger")
    if refusal is RetryRefusal.UNDER_WAY:
        raise Problem(409, str(refusal), "an attempt is under way; retry once it has ended")
    if refusal is RetryRefusal.DISABLED:
        raise Problem(409, str(refusal), "its automation is disabled: enable it first")
    await run_in_threadpool(wake_deliverers, client, 1)
    return JsonResponse({"trigger_id": trigger_id, "status": str(TriggerStatus.RETRYING)})
