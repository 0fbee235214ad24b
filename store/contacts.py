"""Contacts and their attributes: created by login-like events, updated last-writer-wins.

Each attribute remembers ``[event time ms, message_id]`` of the write that set it; a write
lands only if it is at least as new (ties broken by message id), so concurrent workers and
redelivery order can never make an older update overwrite a newer one. Rows are read
``FOR UPDATE`` (PostgreSQL; SQLite's writer lock serialises anyway) and written in one
statement per batch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Dialect, and_, or_, select

from sluice.producer.events import Event
from sluice.store.engine import insert_ignoring_conflicts, matches_any, update_by_key
from sluice.store.schema import contacts


@dataclass(frozen=True, slots=True)
class TraitWrite:
    workspace_id: str
    user_id: str | None
    email: str | None  # lower-cased
    traits: dict[str, Any]
    version: tuple[int, str]  # (event time ms, message_id)
    create: bool

    @classmethod
    def of(cls, event: Event, *, create: bool) -> TraitWrite:
        return cls(
            workspace_id=event.workspace_id,
            user_id=event.user_id,
            email=event.email_key,
            traits=event.traits,
            version=(int(event.timestamp.timestamp() * 1000), event.message_id),
            create=create,
        )


def apply_trait_writes(conn: Connection, writes: Sequence[TraitWrite], now: datetime) -> None:
    by_workspace: dict[str, list[TraitWrite]] = {}
    for write in writes:
        if write.user_id or write.email:
            by_workspace.setdefault(write.workspace_id, []).append(write)
    for workspace_id, group in by_workspace.items():
        _apply(conn, workspace_id, group, now)


def _apply(conn: Connection, workspace_id: str, writes: list[TraitWrite], now: datetime) -> None:
    loaded = _Loaded(_load(conn, workspace_id, writes))
    missing = [w for w in writes if w.create and loaded.find(w) is None]
    if missing:
        _create(conn, workspace_id, missing, loaded, now)
        loaded = _Loaded(_load(conn, workspace_id, writes))
    changed: dict[int, dict[str, Any]] = {}
    for write in writes:
        row = loaded.find(write)
        if row is None:
            continue  # required users were checked by the rules; a racing delete lands here
        if _merge(row, write, loaded):
            changed[row["id"]] = row
    update_by_key(
        conn,
        contacts,
        "id",
        [
            {
                "id": row["id"],
                "user_id": row["user_id"],
                "email": row["email"],
                "attributes": row["attributes"],
                "attribute_times": row["attribute_times"],
                "updated_at": now,
            }
            for row in changed.values()
        ],
    )


def identified(
    dialect: Dialect, workspace_id: str, user_ids: Collection[str], emails: Collection[str]
) -> ColumnElement[bool]:
    """The workspace's contacts known by one of these user ids or emails."""
    return and_(
        contacts.c.workspace_id == workspace_id,
        or_(
            matches_any(dialect, contacts.c.user_id, user_ids),
            matches_any(dialect, contacts.c.email, emails),
        ),
    )


def _load(conn: Connection, workspace_id: str, writes: list[TraitWrite]) -> list[dict[str, Any]]:
    user_ids = {w.user_id for w in writes if w.user_id}
    emails = {w.email for w in writes if w.email}
    query = (
        select(contacts)
        .where(identified(conn.dialect, workspace_id, user_ids, emails))
        .order_by(contacts.c.id)
        .with_for_update()
    )
    return [dict(row._mapping) for row in conn.execute(query)]


class _Loaded:
    """A workspace's loaded contacts, indexed by user id and by email (each unique)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.by_user = {row["user_id"]: row for row in rows if row["user_id"] is not None}
        self.by_email = {row["email"]: row for row in rows if row["email"] is not None}

    def find(self, write: TraitWrite) -> dict[str, Any] | None:
        """The contact a write is about: by user id first, else by email."""
        if write.user_id and write.user_id in self.by_user:
            return self.by_user[write.user_id]
        if write.email:
            row = self.by_email.get(write.email)
            if row is not None and (not write.user_id or row["user_id"] is None):
                return row
        return None


def _create(
    conn: Connection,
    workspace_id: str,
    writes: list[TraitWrite],
    loaded: _Loaded,
    now: datetime,
) -> None:
    taken = set(loaded.by_email)
    fresh: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for write in writes:
        email = None if write.email in taken else write.email
        key = (write.user_id, None if write.user_id else email)
        fresh.setdefault(
            key,
            {
                "workspace_id": workspace_id,
                "user_id": write.user_id,
                "email": email,
                "attributes": {},
                "attribute_times": {},
                "created_at": now,
                "updated_at": now,
            },
        )
        if email:
            taken.add(email)
    # A concurrent worker may create the same contact first: its row is then loaded again.
    insert_ignoring_conflicts(conn, contacts, list(fresh.values()))


def _merge(row: dict[str, Any], write: TraitWrite, loaded: _Loaded) -> bool:
    """Apply one write to a loaded row; True if the row changed. Identities fill gaps only
    (a contact known by email gets its user id at the first login that names both)."""
    changed = False
    if write.user_id and row["user_id"] is None:
        row["user_id"] = write.user_id
        loaded.by_user[write.user_id] = row
        changed = True
    if write.email and row["email"] is None and write.email not in loaded.by_email:
        row["email"] = write.email
        loaded.by_email[write.email] = row
        changed = True
    attributes = dict(row["attributes"])
    times = dict(row["attribute_times"])
    for name, value in write.traits.items():
        current = times.get(name)
        if current is None or tuple(current) < write.version:  # equal: this write, replayed
            attributes[name] = value
            times[name] = list(write.version)
            changed = True
    row["attributes"], row["attribute_times"] = attributes, times
    return changed
