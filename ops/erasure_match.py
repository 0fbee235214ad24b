"""Finding a person's data for an erasure (``sluice.ops.erasure``).

A person is the identifiers of one workspace that name them: the identifier the operator
gave, and the user id and email of the contact it finds (a contact may have both). Their
data is every event carrying one of those identifiers, stored (``events``) or not (the raw
copy a discarded or rejected event leaves in ``outcomes``, a repeated delivery's in
``repeats``, and the events of dead-lettered batches). Emails compare lower-cased, as
contacts store them (``sluice.producer.events.Event.identities``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Connection, Table, exists, false, func, or_, select

from sluice.store.schema import contacts, dead_letter_workspaces, dead_letters, events

IdentifierKind = Literal["email", "user_id"]


def normalised(kind: IdentifierKind, identifier: str) -> str:
    """The identifier as stored: emails lower-cased, user ids as they are."""
    return identifier.lower() if kind == "email" else identifier


@dataclass(frozen=True, slots=True)
class Person:
    workspace_id: str
    user_ids: frozenset[str]
    emails: frozenset[str]  # lower-cased

    @property
    def identifiers(self) -> frozenset[str]:
        return self.user_ids | self.emails

    def names(self, user_id: object, email: object) -> bool:
        """Whether an event with this ``user_id`` and ``email`` is this person's."""
        return (isinstance(user_id, str) and user_id in self.user_ids) or (
            isinstance(email, str) and email.lower() in self.emails
        )

    def named_in(self, document: object) -> bool:
        """Whether a decoded event (a raw copy, an envelope's event) is this person's."""
        return isinstance(document, dict) and self.names(
            document.get("user_id"), document.get("email")
        )

    def named_in_text(self, text: str) -> bool:
        """Whether an event's JSON text names this person: decoded when whole; a copy
        truncated at ``RAW_LIMIT_BYTES`` (worker/ingest/records.py) is read for its
        ``"user_id":"…"`` or ``"email":"…"`` member (the identity comes early in it)."""
        try:
            return self.named_in(orjson.loads(text))
        except orjson.JSONDecodeError:
            return self._members().search(text) is not None

    def _members(self) -> re.Pattern[str]:
        quoted = [
            *(rf'"user_id"\s*:\s*{re.escape(orjson.dumps(u).decode())}' for u in self.user_ids),
            *(rf'"email"\s*:\s*(?i:{re.escape(orjson.dumps(e).decode())})' for e in self.emails),
        ]
        return re.compile("|".join(quoted) or "(?!)")

    def matches(self, user_id: Any, email: Any) -> ColumnElement[bool]:
        """SQL: rows whose ``user_id`` or (lower-cased) ``email`` column names this person."""
        found: list[ColumnElement[bool]] = []
        if self.user_ids:
            found.append(user_id.in_(sorted(self.user_ids)))
        if self.emails:
            found.append(func.lower(email).in_(sorted(self.emails)))
        return or_(*found) if found else false()

    def mentioned_in(self, column: Any) -> ColumnElement[bool]:
        """SQL pre-filter: text columns containing one of the identifiers (any case);
        ``named_in_text`` decides."""
        found = [
            func.lower(column).contains(identifier.lower(), autoescape=True)
            for identifier in sorted(self.identifiers)
        ]
        return or_(*found) if found else false()


def find_person(
    conn: Connection, workspace_id: str, kind: IdentifierKind, identifier: str
) -> Person:
    """The person an identifier names, widened by the contact it finds (at most one: user
    ids and emails are unique per workspace)."""
    value = normalised(kind, identifier)
    column = contacts.c.email if kind == "email" else contacts.c.user_id
    rows = conn.execute(
        select(contacts.c.user_id, contacts.c.email).where(
            contacts.c.workspace_id == workspace_id, column == value
        )
    ).all()
    user_ids = {row.user_id for row in rows if row.user_id}
    emails = {row.email.lower() for row in rows if row.email}
    (emails if kind == "email" else user_ids).add(value)
    return Person(workspace_id, frozenset(user_ids), frozenset(emails))


def stored_message_ids(conn: Connection, person: Person) -> set[str]:
    """The message ids of the person's stored events (one read; ``events`` has no index on
    the identity, so this reads the workspace's events)."""
    query = select(events.c.message_id).where(
        events.c.workspace_id == person.workspace_id,
        person.matches(events.c.user_id, events.c.email),
    )
    return set(conn.scalars(query))


def copied_message_ids(conn: Connection, table: Table, person: Person) -> set[str]:
    """The message ids of ``table``'s raw copies (``outcomes``, ``repeats``) of the
    person's events: the discarded and rejected ones, which ``events`` does not keep."""
    query = select(table.c.message_id, table.c.raw).where(
        table.c.workspace_id == person.workspace_id,
        table.c.raw.is_not(None),
        person.mentioned_in(table.c.raw),
    )
    return {row.message_id for row in conn.execute(query) if person.named_in_text(row.raw)}


@dataclass(frozen=True, slots=True)
class LetterChange:
    """What an erasure does to one dead letter: ``payload`` None deletes it."""

    dead_letter_id: int
    payload: str | None
    events_left: int
    stripped: int  # the person's events taken out
    message_ids: frozenset[str]  # theirs, whose provisional outcomes go too


def letter_changes(conn: Connection, person: Person) -> Iterator[LetterChange]:
    """The dead letters holding events of the person (of their workspace; a poison
    message's workspaces are read from its events), each with its payload rewritten
    without them (deleted when nothing else is left, or when it is not
    whole JSON and names them anyway: such a payload cannot be replayed)."""
    spread = dead_letter_workspaces.c.dead_letter_id == dead_letters.c.id
    query = select(dead_letters.c.id, dead_letters.c.payload).where(
        or_(
            exists().where(spread, dead_letter_workspaces.c.workspace_id == person.workspace_id),
            ~exists().where(spread),  # poison: its workspaces are not known
        ),
        person.mentioned_in(dead_letters.c.payload),
    )
    for row in conn.execute(query).all():
        change = letter_change(row.id, row.payload, person)
        if change is not None:
            yield change


def letter_change(letter_id: int, text: str, person: Person) -> LetterChange | None:
    """The dead letter ``text`` without the person's events; None if it has none."""
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:
        if not person.named_in_text(text):
            return None
        return LetterChange(letter_id, None, 0, 1, frozenset())
    if isinstance(payload, dict) and isinstance(payload.get("events"), list):
        theirs = [e for e in payload["events"] if _theirs(e, person)]
        if not theirs:
            return None
        kept = [e for e in payload["events"] if not _theirs(e, person)]
        ids = frozenset(e["message_id"] for e in theirs if isinstance(e.get("message_id"), str))
        rewritten = orjson.dumps({**payload, "events": kept}).decode() if kept else None
        return LetterChange(letter_id, rewritten, len(kept), len(theirs), ids)
    if _theirs(payload, person):  # a lone event (a dead letter of kind ``event``)
        return LetterChange(letter_id, None, 0, 1, frozenset())
    return None


def _theirs(document: Any, person: Person) -> bool:
    return (
        isinstance(document, dict)
        and document.get("workspace_id") == person.workspace_id
        and person.named_in(document)
    )
