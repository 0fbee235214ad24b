"""Erasing a person (GDPR Art. 17, CCPA): ``sluice contact delete`` (docs/data-lifecycle.md,
Erasure). An operator's command only: no HTTP route can erase, since write keys are public.

What goes, for the person ``sluice.ops.erasure_match`` finds:

- per event (batches of ``BATCH_MESSAGES`` message ids, one transaction each, so no lock
  is held long): its delivery attempts and triggers, its order claims, the repeats and
  the outcome of its message id (so ``GET /v1/events/{id}`` answers 404), the event row;
  in Redis its pending mark and the order claims it holds, deleted before that
  transaction commits (a failure rolls the batch back and a new run finds it again);
- their events in dead letters (payloads rewritten without them);
- in Redis the email-open throttle sets named by their user id or email;
- last, the contact, with the ``erasures`` record, in one transaction. The contact goes
  last because it links the user id to the email: a run that stops halfway can be run
  again with either identifier.

A trigger a deliverer holds under lease is left, with its event, until the lease ends: a
deliverer records an attempt against its trigger row. The erasure waits for such leases
(``lease_wait_s``): the deliverer's record ends a lease, usually within seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Connection, Engine, delete, select, update

from sluice.ops.erasure_keys import ClaimKeys
from sluice.ops.erasure_match import (
    IdentifierKind,
    Person,
    copied_message_ids,
    find_person,
    letter_change,
    letter_changes,
    normalised,
    stored_message_ids,
)
from sluice.producer.events import as_utc, utc_now
from sluice.store.engine import matches_any, writing
from sluice.store.schema import (
    contacts,
    dead_letter_workspaces,
    dead_letters,
    delivery_attempts,
    erasures,
    events,
    order_claims,
    outcomes,
    repeats,
    trigger_deliveries,
    workspaces,
)

BATCH_MESSAGES = 1000  # message ids per transaction
LEASE_GRACE_S = 5.0  # after a lease ends: time for the deliverer's record to land
LEASE_POLL_S = 0.5  # how often leased triggers are looked at again
DEFAULT_LEASE_WAIT_S = 300.0
# What ``removed`` counts, in this order.
REMOVED = (
    "contacts",
    "events",
    "outcomes",
    "repeats",
    "order_claims",
    "trigger_deliveries",
    "delivery_attempts",
    "dead_letters",
    "dead_letter_events",
    "redis_pending_marks",
    "redis_order_claims",
    "redis_email_opens",
)


def subject_of(workspace_id: str, kind: IdentifierKind, identifier: str) -> str:
    """sha256 hex of ``{workspace_id}:{kind}:{identifier}`` (emails lower-cased): the same
    identifier finds its erasures again; the record alone does not give it back. It is
    pseudonymous, not anonymous: whoever holds a candidate identifier can test it."""
    text = f"{workspace_id}:{kind}:{normalised(kind, identifier)}"
    return hashlib.sha256(text.encode()).hexdigest()


class ErasureIncompleteError(RuntimeError):
    """Triggers of the person stayed under delivery past the wait; run the erasure again."""


@dataclass(frozen=True, slots=True)
class ErasureReport:
    erasure_id: int
    workspace_id: str
    identifier_kind: IdentifierKind
    subject: str
    requested_by: str
    erased_at: datetime
    removed: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "erasure_id": self.erasure_id,
            "workspace_id": self.workspace_id,
            "identifier_kind": self.identifier_kind,
            "subject": self.subject,
            "requested_by": self.requested_by,
            "erased_at": self.erased_at.isoformat(),
            "removed": self.removed,
        }


def erase_contact(
    engine: Engine,
    client: redis.Redis,
    workspace_id: str,
    kind: IdentifierKind,
    identifier: str,
    *,
    requested_by: str,
    lease_wait_s: float = DEFAULT_LEASE_WAIT_S,
    batch_messages: int = BATCH_MESSAGES,
    clock: Callable[[], datetime] = utc_now,
) -> ErasureReport:
    """Erase what is stored of the person ``identifier`` names in a workspace, and record
    that it happened. Raises ``LookupError`` for an unknown workspace and
    ``ErasureIncompleteError`` when triggers stay leased past ``lease_wait_s``."""
    claims = ClaimKeys(client)
    with engine.connect() as conn:
        if conn.scalar(select(workspaces.c.id).where(workspaces.c.id == workspace_id)) is None:
            raise LookupError(f"no workspace {workspace_id!r}")
        person = find_person(conn, workspace_id, kind, identifier)
        message_ids = stored_message_ids(conn, person)
        message_ids |= copied_message_ids(conn, outcomes, person)
        message_ids |= copied_message_ids(conn, repeats, person)
        letters = list(letter_changes(conn, person))
    for letter in letters:
        message_ids |= letter.message_ids
    removed: Counter[str] = Counter({name: 0 for name in REMOVED})
    _erase_messages(
        engine, claims, person, sorted(message_ids), removed, lease_wait_s, batch_messages, clock
    )
    for letter in letters:
        _rewrite_letter(engine, person, letter.dead_letter_id, removed)
    removed["redis_email_opens"] += claims.forget_opens(person)
    subject = subject_of(workspace_id, kind, identifier)
    by = requested_by[:200]
    with writing(engine) as conn:
        removed["contacts"] += _count(
            conn.execute(
                delete(contacts).where(
                    contacts.c.workspace_id == workspace_id,
                    person.matches(contacts.c.user_id, contacts.c.email),
                )
            )
        )
        erased_at = clock()
        counts = {name: removed[name] for name in REMOVED}
        erasure_id = conn.execute(
            erasures.insert()
            .values(
                workspace_id=workspace_id,
                subject=subject,
                identifier_kind=kind,
                requested_by=by,
                erased_at=erased_at,
                removed=counts,
            )
            .returning(erasures.c.id)
        ).scalar_one()
    return ErasureReport(int(erasure_id), workspace_id, kind, subject, by, erased_at, counts)


def _erase_messages(
    engine: Engine,
    claims: ClaimKeys,
    person: Person,
    message_ids: list[str],
    removed: Counter[str],
    lease_wait_s: float,
    batch_messages: int,
    clock: Callable[[], datetime],
) -> None:
    """Batch by batch; messages whose triggers are under lease again once the leases end."""
    deadline = time.monotonic() + lease_wait_s
    while message_ids:
        leased: set[str] = set()
        for start in range(0, len(message_ids), batch_messages):
            chunk = message_ids[start : start + batch_messages]
            with writing(engine) as conn:
                leased |= _erase_batch(conn, claims, person.workspace_id, chunk, removed, clock())
        if not leased:
            return
        if time.monotonic() > deadline:
            raise ErasureIncompleteError(
                f"{len(leased)} events of this person have triggers still being delivered; "
                "the rest is erased: run the same command again shortly"
            )
        time.sleep(LEASE_POLL_S)  # a deliverer's record ends its lease, usually in seconds
        message_ids = sorted(leased)


def _erase_batch(
    conn: Connection,
    claims: ClaimKeys,
    workspace_id: str,
    message_ids: list[str],
    removed: Counter[str],
    now: datetime,
) -> set[str]:
    """Erase these messages in one transaction, but those whose triggers are under lease
    (returned). Redis keys go before the commit."""
    dialect = conn.dialect
    held = conn.execute(
        select(
            trigger_deliveries.c.id,
            trigger_deliveries.c.message_id,
            trigger_deliveries.c.lease_until,
        )
        .where(
            trigger_deliveries.c.workspace_id == workspace_id,
            matches_any(dialect, trigger_deliveries.c.message_id, message_ids),
        )
        .order_by(trigger_deliveries.c.id)
        .with_for_update()  # in id order, as every writer of triggers locks them
    ).all()
    grace = timedelta(seconds=LEASE_GRACE_S)
    leased = {
        row.message_id
        for row in held
        if row.lease_until is not None and as_utc(row.lease_until) + grace > now
    }
    now_ids = [m for m in message_ids if m not in leased]
    trigger_ids = [row.id for row in held if row.message_id not in leased]
    if trigger_ids:
        removed["delivery_attempts"] += _count(
            conn.execute(
                delete(delivery_attempts).where(
                    matches_any(dialect, delivery_attempts.c.trigger_id, trigger_ids)
                )
            )
        )
        removed["trigger_deliveries"] += _count(
            conn.execute(
                delete(trigger_deliveries).where(
                    matches_any(dialect, trigger_deliveries.c.id, trigger_ids)
                )
            )
        )
    if not now_ids:
        return leased
    orders = [
        (row.order_id, row.message_id)
        for row in conn.execute(
            select(order_claims.c.order_id, order_claims.c.message_id).where(
                order_claims.c.workspace_id == workspace_id,
                matches_any(dialect, order_claims.c.message_id, now_ids),
            )
        )
    ]
    for name, table in (
        ("order_claims", order_claims),
        ("repeats", repeats),
        ("outcomes", outcomes),
        ("events", events),
    ):
        removed[name] += _count(
            conn.execute(
                delete(table).where(
                    table.c.workspace_id == workspace_id,
                    matches_any(dialect, table.c.message_id, now_ids),
                )
            )
        )
    removed["redis_pending_marks"] += claims.forget_pending(workspace_id, now_ids)
    removed["redis_order_claims"] += claims.forget_orders(workspace_id, orders)
    return leased


def _rewrite_letter(engine: Engine, person: Person, letter_id: int, removed: Counter[str]) -> None:
    """A dead letter without the person's events (deleted if nothing else is left), decided
    again on the row as it is now (a replay may have run since it was read)."""
    with writing(engine) as conn:
        mine = dead_letters.c.id == letter_id
        row = conn.execute(
            select(dead_letters.c.payload, dead_letters.c.events).where(mine)
        ).first()
        letter = None if row is None else letter_change(letter_id, row.payload, person)
        if row is None or letter is None:
            return
        removed["dead_letter_events"] += letter.stripped
        if letter.payload is None:
            removed["dead_letters"] += _count(conn.execute(delete(dead_letters).where(mine)))
            return
        conn.execute(
            update(dead_letters)
            .values(
                payload=letter.payload,
                events=None if row.events is None else letter.events_left,  # poison: unknown
            )
            .where(mine)
        )
        spread = (
            dead_letter_workspaces.c.dead_letter_id == letter_id,
            dead_letter_workspaces.c.workspace_id == person.workspace_id,
        )
        conn.execute(
            update(dead_letter_workspaces)
            .values(events=dead_letter_workspaces.c.events - letter.stripped)
            .where(*spread)
        )
        conn.execute(
            delete(dead_letter_workspaces).where(*spread, dead_letter_workspaces.c.events <= 0)
        )


def _count(result: Any) -> int:
    return max(int(result.rowcount or 0), 0)


def erasures_of(
    engine: Engine, workspace_id: str, kind: IdentifierKind, identifier: str
) -> list[dict[str, Any]]:
    """The recorded erasures of this identifier in the workspace ("was X erased?")."""
    query = (
        select(erasures)
        .where(
            erasures.c.workspace_id == workspace_id,
            erasures.c.subject == subject_of(workspace_id, kind, identifier),
        )
        .order_by(erasures.c.id)
    )
    with engine.connect() as conn:
        return [
            {
                "erasure_id": row.id,
                "workspace_id": row.workspace_id,
                "identifier_kind": row.identifier_kind,
                "subject": row.subject,
                "requested_by": row.requested_by,
                "erased_at": as_utc(row.erased_at).isoformat(),
                "removed": row.removed,
            }
            for row in conn.execute(query)
        ]
