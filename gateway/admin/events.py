"""``/admin/v1/workspaces/{ws}/events``: the workspace's outcomes, filtered, newest first;
and one event: the stored event, its verdict, and its triggers with their attempts
(``sluice.store.outcomes``, ``sluice.store.views``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from sluice.gateway.admin.access import ScopedWorkspace
from sluice.gateway.admin.pages import Cursor, Limit, before_row_id, page, utc_query
from sluice.gateway.admin.problems import blocking, invalid, not_found
from sluice.gateway.dependencies import DatabaseDep
from sluice.gateway.responses import JsonResponse
from sluice.producer.events import MAX_MESSAGE_ID_CHARS
from sluice.rules import Reason, Status
from sluice.store.outcomes import outcome_of, outcome_page, stored_event
from sluice.store.views import triggers_with_attempts

router = APIRouter(prefix="/workspaces/{workspace_id}/events", tags=["admin: events"])
Text = Annotated[str | None, Query(max_length=320)]


@router.get("", summary="The workspace's outcomes, newest decided first, filtered")
async def listed(
    workspace_id: ScopedWorkspace,
    database: DatabaseDep,
    status: Status | None = None,
    reason: Reason | None = None,
    name: Text = None,
    user_id: Text = None,
    email: Text = None,
    since: Annotated[datetime | None, Query(description="decided at or after")] = None,
    until: Annotated[datetime | None, Query(description="decided before")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JsonResponse:
    before_id = before_row_id(cursor)
    since, until = utc_query(since, "since"), utc_query(until, "until")
    if any(text is not None and "\x00" in text for text in (name, user_id, email)):
        raise invalid([{"field": "(query)", "message": "text may not contain a NUL character"}])
    found = await blocking(
        lambda: outcome_page(
            database,
            workspace_id,
            limit=limit + 1,
            before_id=before_id,
            status=None if status is None else str(status),
            reason=None if reason is None else str(reason),
            name=name,
            user_id=user_id,
            email=None if email is None else email.lower(),
            since=since,
            until=until,
        )
    )
    chosen = found[:limit]
    last = [chosen[-1]["cursor"]] if len(found) > limit else None
    for item in chosen:
        del item["cursor"]
    return JsonResponse(page(chosen, last))


@router.get("/{message_id}", summary="One event: stored, its verdict, its triggers and attempts")
async def show(
    message_id: str, workspace_id: ScopedWorkspace, database: DatabaseDep
) -> JsonResponse:
    if "\x00" in message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise not_found("event")
    outcome = await blocking(outcome_of, database, workspace_id, message_id)
    if outcome is None:
        raise not_found("event")
    event = await blocking(stored_event, database, workspace_id, message_id)
    fired = await blocking(triggers_with_attempts, database, workspace_id, message_id)
    verdict = {**outcome.fields(), "decided_at": outcome.decided_at.isoformat()}
    return JsonResponse(
        {"message_id": message_id, "event": event, "outcome": verdict, "triggers": fired}
    )
