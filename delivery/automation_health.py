"""The automation health policy: what a batch of recorded attempts means for their
automations, written in the transaction that records them (``sluice.delivery.leases``).

For each automation with attempts in the batch, by what its attempts did:
- one answered 410 Gone: the automation is disabled at once;
- else one was delivered: it is no longer failing (``failing_since`` cleared);
- else every one failed: it is failing since its first failure, and disabled once it has
  been failing for ``disable_after_s``.

Disabling cancels the automation's waiting triggers (``sluice.store.automations``); those
under way record their own results, and the housekeeping settles them
(``TriggerStore.settle_abandoned``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, select, update

from sluice.actions import AttemptResult
from sluice.producer.events import as_utc
from sluice.store.automations import disable_automation
from sluice.store.schema import automations

GONE_REASON = "the endpoint answered 410 Gone"


class AutomationResult(NamedTuple):
    """One recorded attempt, as the policy sees it."""

    automation_id: str
    result: AttemptResult
    was_failing: bool  # its automation had failed since its last success, when claimed


def apply_results(
    conn: Connection, results: Iterable[AutomationResult], now: datetime, *, disable_after_s: float
) -> None:
    """Apply the policy to the automations of ``results`` (in automation id order, the lock
    order of every writer of automations)."""
    seen: dict[str, set[AttemptResult]] = {}
    failing: set[str] = set()
    for automation_id, result, was_failing in results:
        seen.setdefault(automation_id, set()).add(result)
        if was_failing:
            failing.add(automation_id)
    for automation_id, outcomes in sorted(seen.items()):
        if AttemptResult.GONE in outcomes:
            disable_automation(conn, automation_id, GONE_REASON, now)
        elif AttemptResult.DELIVERED in outcomes:
            if automation_id in failing:  # otherwise nothing to write (and no row to lock)
                end_failing(conn, automation_id)
        else:
            note_failure(conn, automation_id, now, disable_after_s=disable_after_s)


def end_failing(conn: Connection, automation_id: str) -> None:
    """A success: the automation is no longer failing."""
    conn.execute(
        update(automations).where(automations.c.id == automation_id).values(failing_since=None)
    )


def note_failure(
    conn: Connection, automation_id: str, now: datetime, *, disable_after_s: float
) -> None:
    """Every attempt failed: the automation is failing since now, unless it was already;
    disabled when that is ``disable_after_s`` or more ago."""
    conn.execute(
        update(automations)
        .where(automations.c.id == automation_id, automations.c.failing_since.is_(None))
        .values(failing_since=now)
    )
    since = conn.execute(
        select(automations.c.failing_since).where(automations.c.id == automation_id)
    ).scalar_one()
    failing_s = (now - as_utc(since)).total_seconds()
    if failing_s >= disable_after_s:
        disable_automation(
            conn,
            automation_id,
            f"every attempt failed since {as_utc(since).isoformat()} "
            f"(over {int(disable_after_s)} s)",
            now,
        )
