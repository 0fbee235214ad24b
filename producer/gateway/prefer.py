"""``Prefer: wait=N`` (RFC 7240): answer with the worker's verdicts if they arrive within N
seconds. Without the preference, or past N, events are reported ``queued``."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from worker.store import EventStore

MAX_WAIT_S = 30.0
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def requested_wait_s(request: Request) -> float | None:
    """The wait the client prefers, capped at ``MAX_WAIT_S``; None without one."""
    match = _WAIT.search(request.headers.get("prefer", ""))
    return min(float(match[1]), MAX_WAIT_S) if match else None


async def verdicts(
    store: EventStore, workspace_id: str, message_ids: Sequence[str], wait_s: float
) -> dict[str, dict[str, Any]]:
    """Each message id's status (and reason, detail) once decided, or ``queued`` at the
    deadline. Polls one query at a time, backing off from 20 ms to 250 ms."""
    deadline = time.monotonic() + wait_s
    delay = 0.02
    decided: dict[str, dict[str, Any]] = {}
    while True:
        missing = [m for m in message_ids if m not in decided]
        found = await run_in_threadpool(store.outcomes, workspace_id, missing)
        for message_id, record in found.items():
            decided[message_id] = {
                "status": str(record.status),
                "reason": record.reason,
                "detail": record.detail,
            }
        remaining = deadline - time.monotonic()
        if len(decided) == len(set(message_ids)) or remaining <= 0:
            break
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.25)
    queued = {"status": "queued", "reason": None, "detail": None}
    return {m: decided.get(m, queued) for m in message_ids}


def applied(wait_s: float) -> dict[str, str]:
    shown = int(wait_s) if wait_s == int(wait_s) else wait_s
    return {"Preference-Applied": f"wait={shown}"}
