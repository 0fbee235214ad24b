"""``GET /admin/v1/audit``: the control plane's writes, newest first (cluster-wide
tokens; ``sluice.store.admin_audit``)."""

from __future__ import annotations

from fastapi import APIRouter

from sluice.gateway.admin.access import ClusterToken
from sluice.gateway.admin.pages import Cursor, Limit, before_row_id, page
from sluice.gateway.admin.problems import blocking
from sluice.gateway.dependencies import DatabaseDep
from sluice.gateway.responses import JsonResponse
from sluice.store.admin_audit import audit_entries

router = APIRouter(tags=["admin: audit"])


@router.get("/audit", summary="Every write of the control plane, newest first")
async def audit(
    _grant: ClusterToken, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> JsonResponse:
    before_id = before_row_id(cursor)
    found = await blocking(audit_entries, database, limit + 1, before_id)
    chosen = found[:limit]
    return JsonResponse(page(chosen, [chosen[-1]["id"]] if len(found) > limit else None))
