"""``/admin/v1/dead-letters``: batches a worker gave up on, listed, shown and replayed
(cluster-wide tokens: a batch may hold events of several workspaces), through the
functions ``sluice dlq`` calls (``sluice.store.dead_letters``, ``sluice.ops.replay``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from sluice.gateway.admin.access import ClusterToken
from sluice.gateway.admin.pages import MAX_ROW_ID, Cursor, Limit, before_row_id, page
from sluice.gateway.admin.problems import blocking, invalid, not_found
from sluice.gateway.dependencies import DatabaseDep, collaborators
from sluice.gateway.responses import JsonResponse
from sluice.ops.replay import DeadLetterReplayer
from sluice.producer.events import utc_now
from sluice.store.dead_letters import list_dead_letters, show_dead_letter

router = APIRouter(prefix="/dead-letters", tags=["admin: dead letters"])
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


@router.get("", summary="Dead letters, newest first")
async def listed(
    _grant: ClusterToken,
    database: DatabaseDep,
    workspace_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JsonResponse:
    before_id = before_row_id(cursor)
    if workspace_id is not None and "\x00" in workspace_id:
        raise invalid([{"field": "workspace_id", "message": "no workspace has this id"}])
    found = await blocking(list_dead_letters, database, workspace_id, limit + 1, before_id)
    chosen = found[:limit]
    return JsonResponse(page(chosen, [chosen[-1]["id"]] if len(found) > limit else None))


@router.get("/{dead_letter_id}", summary="One dead letter: its error and its message")
async def show(dead_letter_id: RowId, _grant: ClusterToken, database: DatabaseDep) -> JsonResponse:
    found = await blocking(show_dead_letter, database, dead_letter_id)
    if found is None:
        raise not_found("dead letter")
    return JsonResponse(found)


@router.post("/{dead_letter_id}/replay", summary="Replay a dead letter (once)")
async def replay(
    dead_letter_id: RowId, request: Request, _grant: ClusterToken, database: DatabaseDep
) -> JsonResponse:
    """Published as the command line publishes it; answered at once (``queued``): read the
    events' verdicts with ``GET …/events/{id}``. A dead letter is replayed once."""
    replayer = DeadLetterReplayer(database, collaborators(request).publisher)
    (result,) = await blocking(replayer.replay, [dead_letter_id], utc_now())
    if result.status == "not_found":
        raise not_found("dead letter")
    return JsonResponse(result.as_dict())
