"""``Prefer: wait=N`` (RFC 7240): answer with the worker's verdicts if they arrive within N
seconds. Without the preference, or past N, events are reported ``queued``."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from sluice.store.outcomes import outcomes_of

MAX_WAIT_S = 30.0
# One preference of a Prefer header: its name, and its value up to a parameter or the end.
_PREFERENCE = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("[^"]*"|[^;,\s]*))?')


def requested_wait_s(request: Request) -> float | None:
    """The ``wait`` preference (delta-seconds), capped at ``MAX_WAIT_S``; None without one.
    All Prefer header fields count, each a comma-separated list of preferences whose
    parameters follow a ``;`` (RFC 7240 §2); a quoted value is unquoted."""
    for field in request.headers.getlist("prefer"):
        for preference in _split_outside_quotes(field):
            match = _PREFERENCE.match(preference)
            if match and match[1].lower() == "wait":
                value = (match[2] or "").strip('"')
                # ASCII digits only: "²".isdigit() is true, but not a number.
                return (
                    min(float(value), MAX_WAIT_S) if value.isascii() and value.isdigit() else None
                )
    return None


def _split_outside_quotes(field: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in field:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


async def verdicts(
    database: Engine, workspace_id: str, message_ids: Sequence[str], wait_s: float
) -> dict[str, dict[str, Any]]:
    """Each message id's status (and reason, detail) once decided, or ``queued`` at the
    deadline. Polls one query at a time, backing off from 20 ms to 250 ms."""
    deadline = time.monotonic() + wait_s
    delay = 0.02
    decided: dict[str, dict[str, Any]] = {}
    while True:
        missing = [m for m in message_ids if m not in decided]
        try:
            found = await run_in_threadpool(outcomes_of, database, workspace_id, missing)
        except SQLAlchemyError:  # the events are queued already: say so, do not fail
            break
        for message_id, outcome in found.items():
            decided[message_id] = outcome.verdict()
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
