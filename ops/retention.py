"""Purging a workspace's old data: its events older than a moment in event time, with their
outcomes, repeats, triggers and delivery attempts, and the outcomes of its discarded and
rejected events decided before that moment (docs/data-lifecycle.md, "Retention").

Everything goes in bounded transactions (``batch_events`` events each, found through
``ix_events_workspace_timestamp``, migration 0008), with a pause between them, so no lock is
held long and ingestion goes on at its speed. A purge can stop between any two of them: what
was deleted stays deleted, what was not stays whole (an event with all its rows).

Open triggers (pending or retrying) of a purged event are deleted with it: the event they
would deliver is gone. A trigger with an attempt under way (leased, its lease not long over)
keeps its event for now: the deliverer records that attempt against the trigger's row
(``sluice.delivery.leases``). The trigger rows of a batch are locked first, in id
order as the deliverer's records lock them, so no deliverer claims one in the meantime.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, delete, or_, select
from sqlalchemy.exc import OperationalError

from sluice.producer.events import as_utc, utc_now
from sluice.store.automations import OPEN
from sluice.store.engine import matches_any, writing
from sluice.store.schema import delivery_attempts, events, outcomes, repeats
from sluice.store.schema import trigger_deliveries as triggers

DEFAULT_BATCH_EVENTS = 2_000
OUTCOME_SCAN_ROWS = 5_000  # outcomes read per step when looking for old discarded ones
# An attempt never outlives its lease by more than this (it starts well within the lease
# and ends within the webhook timeout, sluice.delivery.deliverer).
LATE_RECORD_S = 120
RETRIES = 3  # a batch that fails on a deadlock or a lost connection is tried again
T = TypeVar("T")
TABLES = ("events", "outcomes", "repeats", "trigger_deliveries", "delivery_attempts")


def keep_going() -> bool:
    return True


@dataclass
class PurgeReport:
    """What a purge removed, per table, and how long its transactions took."""

    workspace_id: str
    before: datetime
    removed: Counter[str] = field(default_factory=Counter)
    open_triggers_deleted: int = 0
    events_kept_for_attempts: int = 0  # an attempt of their trigger was under way
    transactions: int = 0
    longest_transaction_s: float = 0.0
    elapsed_s: float = 0.0
    stopped: bool = False  # asked to stop before the end

    @property
    def rows(self) -> int:
        return sum(self.removed.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "workspace_id": self.workspace_id,
            "before": self.before.isoformat(),
            "removed": {table: self.removed.get(table, 0) for table in TABLES},
            "rows": self.rows,
            "open_triggers_deleted": self.open_triggers_deleted,
            "events_kept_for_attempts": self.events_kept_for_attempts,
            "transactions": self.transactions,
            "longest_transaction_ms": round(self.longest_transaction_s * 1000, 1),
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "stopped": self.stopped,
        }


def purge_before(
    engine: Engine,
    workspace_id: str,
    before: datetime,
    *,
    batch_events: int = DEFAULT_BATCH_EVENTS,
    between_batches: Callable[[], bool] = keep_going,
) -> PurgeReport:
    """Delete ``workspace_id``'s events whose event time (``events.timestamp``) is before
    ``before``, with their outcomes, repeats, triggers and attempts; then the outcomes (and
    repeats) of its discarded and rejected events, which have no event row, by the time
    they were decided (``outcomes.decided_at``: outcomes keep no event time).

    ``between_batches`` runs after each transaction (pause there); when it returns False the
    purge stops, and the report says so."""
    before = as_utc(before)
    report = PurgeReport(workspace_id, before)
    started = time.monotonic()
    purge = _Purge(engine, workspace_id, before, batch_events, between_batches, report)
    try:
        purge.events()
        purge.undecided_outcomes()
    except _Stopped:
        report.stopped = True
    report.elapsed_s = time.monotonic() - started
    return report


class _Stopped(Exception):
    pass


@dataclass
class _Tally:
    """What one transaction removed; added to the report once it has committed."""

    removed: Counter[str] = field(default_factory=Counter)
    open_triggers_deleted: int = 0
    events_kept_for_attempts: int = 0

    def add_to(self, report: PurgeReport) -> None:
        report.removed.update(self.removed)
        report.open_triggers_deleted += self.open_triggers_deleted
        report.events_kept_for_attempts += self.events_kept_for_attempts


Batch = Callable[[Connection, _Tally], T]


@dataclass
class _Purge:
    engine: Engine
    workspace_id: str
    before: datetime
    batch_events: int
    between_batches: Callable[[], bool]
    report: PurgeReport

    def events(self) -> None:
        after: tuple[datetime, int] | None = None
        while True:
            found = self._in_transaction(partial(self._event_batch, after=after))
            if found is None:
                return
            after = found

    def _event_batch(
        self, conn: Connection, tally: _Tally, *, after: tuple[datetime, int] | None
    ) -> tuple[datetime, int] | None:
        """One batch of old events and everything of theirs; the key of the batch's last
        event (the next batch starts after it), or None when none was left."""
        ws = self.workspace_id
        query = select(events.c.id, events.c.message_id, events.c.timestamp).where(
            events.c.workspace_id == ws, events.c.timestamp < self.before
        )
        if after is not None:  # keyset: events kept for an attempt are not read again
            at, event_id = after
            query = query.where(
                events.c.timestamp >= at,
                or_(
                    events.c.timestamp > at, and_(events.c.timestamp == at, events.c.id > event_id)
                ),
            )
        found = conn.execute(
            query.order_by(events.c.timestamp, events.c.id).limit(self.batch_events)
        ).all()
        if not found:
            return None
        dialect = conn.dialect
        message_ids = [row.message_id for row in found]
        attached = conn.execute(
            select(triggers.c.id, triggers.c.message_id, triggers.c.status, triggers.c.lease_until)
            .where(
                triggers.c.workspace_id == ws,
                matches_any(dialect, triggers.c.message_id, message_ids),
            )
            .order_by(triggers.c.id)
            .with_for_update()  # in id order, as the deliverer's records lock them
        ).all()
        recent = utc_now() - timedelta(seconds=LATE_RECORD_S)
        held = {
            row.message_id
            for row in attached
            if row.status in OPEN
            and row.lease_until is not None
            and as_utc(row.lease_until) > recent
        }
        gone = [m for m in message_ids if m not in held]
        dropped = [row for row in attached if row.message_id not in held]
        tally.events_kept_for_attempts = len(held)
        tally.open_triggers_deleted = sum(1 for row in dropped if row.status in OPEN)
        trigger_ids = [row.id for row in dropped]
        if trigger_ids:
            tally.removed["delivery_attempts"] = _deleted(
                conn,
                delete(delivery_attempts).where(
                    matches_any(dialect, delivery_attempts.c.trigger_id, trigger_ids)
                ),
            )
            tally.removed["trigger_deliveries"] = _deleted(
                conn, delete(triggers).where(matches_any(dialect, triggers.c.id, trigger_ids))
            )
        if gone:
            for table in (outcomes, repeats, events):
                tally.removed[table.name] = _deleted(
                    conn,
                    delete(table).where(
                        table.c.workspace_id == ws, matches_any(dialect, table.c.message_id, gone)
                    ),
                )
        last = found[-1]
        return last.timestamp, last.id

    def undecided_outcomes(self) -> None:
        """The outcomes of discarded and rejected events decided before the cutoff, with
        their repeats. Outcomes have no index by time, so this walks the workspace's
        outcomes by message id (the unique index), ``OUTCOME_SCAN_ROWS`` at a time, and
        deletes what it found in bounded transactions."""
        ws = self.workspace_id
        after = ""
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(outcomes.c.message_id, outcomes.c.status, outcomes.c.decided_at)
                    .where(outcomes.c.workspace_id == ws, outcomes.c.message_id > after)
                    .order_by(outcomes.c.message_id)
                    .limit(OUTCOME_SCAN_ROWS)
                ).all()
            if not rows:
                return
            if not self.between_batches():  # a long walk stops when asked, too
                raise _Stopped
            after = rows[-1].message_id
            old = [
                row.message_id
                for row in rows
                if row.status != "accepted" and as_utc(row.decided_at) < self.before
            ]
            for start in range(0, len(old), self.batch_events):
                chunk = old[start : start + self.batch_events]
                self._in_transaction(partial(self._outcome_batch, message_ids=chunk))

    def _outcome_batch(
        self, conn: Connection, tally: _Tally, *, message_ids: Sequence[str]
    ) -> None:
        ws, dialect = self.workspace_id, conn.dialect
        tally.removed["outcomes"] = _deleted(
            conn,
            delete(outcomes).where(
                outcomes.c.workspace_id == ws,
                matches_any(dialect, outcomes.c.message_id, message_ids),
                outcomes.c.status != "accepted",  # checked again: decided anew since read
                outcomes.c.decided_at < self.before,
            ),
        )
        tally.removed["repeats"] = _deleted(
            conn,
            delete(repeats).where(
                repeats.c.workspace_id == ws,
                matches_any(dialect, repeats.c.message_id, message_ids),
            ),
        )

    def _in_transaction(self, work: Batch[T]) -> T:
        """``work`` in one write transaction, timed; tried again after a deadlock or a lost
        connection; then ``between_batches``."""
        attempt = 1
        while True:
            tally = _Tally()
            started = time.monotonic()
            try:
                with writing(self.engine) as conn:
                    result = work(conn, tally)
            except OperationalError:
                if attempt >= RETRIES:
                    raise
                time.sleep(attempt)
                attempt += 1
                continue
            break
        tally.add_to(self.report)
        self.report.transactions += 1
        took_s = time.monotonic() - started
        self.report.longest_transaction_s = max(self.report.longest_transaction_s, took_s)
        if not self.between_batches():
            raise _Stopped
        return result


def _deleted(conn: Connection, statement: Any) -> int:
    return int(conn.execute(statement).rowcount or 0)
