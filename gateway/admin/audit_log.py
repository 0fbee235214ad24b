"""``GET /admin/v1/audit``: the control plane's writes, newest first (cluster-wide
tokens; ``sluice.store.admin_audit``)."""

from __future__ import annotations

from fastapi import APIRouter

from sluice.gateway.admin.access import ClusterToken
from sluice.gateway.admin.pages import Cursor, Limit, decode_cursor, page
from sluice.gateway.admin.problems import blocking, invalid
from sluice.gateway.dependencies import DatabaseDep
from sluice.gateway.responses import JsonResponse
from sluice.store.admin_audit import audit_entries

router = APIRouter(tags=["admin: audit"])


@router.get("/audit", summary="Every write of the control plane, newest first")
async def audit(
    _grant: ClusterToken, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> JsonResponse:
    after = decode_cursor(cursor)
    if after is not None and not (len(after) == 1 and isinstance(after[0], int)):
        raise invalid([{"field": "cursor", "message": "not a cursor this API gave"}])
    before_id = None if after is None else after[0]
    found = await blocking(audit_entries, database, limit + 1, before_id)
    chosen = found[:limit]
    return JsonResponse(page(chosen, [chosen[-1]["id"]] if len(found) > limit else None))
