"""Reading verdicts: what ``GET /v1/events/{id}`` and ``Prefer: wait=N`` read (the
database's outcomes, the pending marks in Redis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import Engine

from sluice.gateway.prefer import applied, requested_wait_s, verdicts
from sluice.gateway.waits import WaitSlots
from sluice.producer.pending import PendingMarks


@dataclass(frozen=True, slots=True)
class OutcomeReader:
    database: Engine
    marks: PendingMarks | None  # where the publisher marks events queued
    waits: WaitSlots  # the waits under way, per workspace

    def is_pending(self, workspace_id: str, message_id: str) -> bool:
        """Whether the event is queued and not decided yet (blocking: one Redis call)."""
        return self.marks is not None and self.marks.is_pending(workspace_id, message_id)

    async def outcomes_if_asked(
        self, request: Request, workspace_id: str, message_ids: Sequence[str]
    ) -> tuple[dict[str, dict[str, Any]] | None, dict[str, str]]:
        """With ``Prefer: wait=N``: the verdicts (within N s) and the response headers. A
        workspace with its ``SLUICE_MAX_WAITS_PER_WORKSPACE`` waits under way is answered at
        once, as without the preference."""
        wait_s = requested_wait_s(request)
        if wait_s is None:
            return None, {}
        with self.waits.slot(workspace_id) as allowed:
            if not allowed:
                return None, {}
            found = await verdicts(self.database, workspace_id, message_ids, wait_s)
        return found, applied(wait_s)
