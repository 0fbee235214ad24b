"""Contacts: login-like writes create them, attributes are last-writer-wins by event time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from sluice.producer.events import Event
from sluice.store.contacts import TraitWrite, apply_trait_writes
from sluice.store.engine import writing
from sluice.store.schema import contacts
from sluice.store.workspaces import create_workspace

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def write(
    ws: str, message_id: str, minute: int, create: bool = True, **fields: object
) -> TraitWrite:
    event = Event(
        workspace_id=ws,
        message_id=message_id,
        kind="login",
        timestamp=T0 + timedelta(minutes=minute),
        **fields,
    )  # type: ignore[arg-type]
    return TraitWrite.of(event, create=create)


def apply(engine: Engine, *writes: TraitWrite) -> None:
    with writing(engine) as conn:
        apply_trait_writes(conn, list(writes), T0)


def stored(engine: Engine, ws: str) -> list[tuple[object, ...]]:
    query = (
        select(contacts.c.user_id, contacts.c.email, contacts.c.attributes)
        .where(contacts.c.workspace_id == ws)
        .order_by(contacts.c.id)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_newest_event_time_wins_whatever_the_order_of_arrival(engine: Engine) -> None:
    ws = create_workspace(engine, "lww").workspace_id
    apply(engine, write(ws, "m3", 3, user_id="u", traits={"plan": "max", "seats": 3}))
    apply(engine, write(ws, "m1", 1, user_id="u", traits={"plan": "free", "city": "Oslo"}))
    apply(engine, write(ws, "m2", 2, user_id="u", traits={"seats": 2}))
    assert stored(engine, ws) == [("u", None, {"plan": "max", "seats": 3, "city": "Oslo"})]


def test_a_replayed_write_changes_nothing_and_ties_break_by_message_id(engine: Engine) -> None:
    ws = create_workspace(engine, "ties").workspace_id
    apply(engine, write(ws, "b", 1, user_id="u", traits={"plan": "b"}))
    apply(engine, write(ws, "a", 1, user_id="u", traits={"plan": "a"}))  # same time, lower id
    apply(engine, write(ws, "b", 1, user_id="u", traits={"plan": "b"}))  # replay
    assert stored(engine, ws) == [("u", None, {"plan": "b"})]


def test_identities_join_up_and_updates_never_create(engine: Engine) -> None:
    ws = create_workspace(engine, "ids").workspace_id
    apply(engine, write(ws, "m1", 1, email="Ann@Example.com", traits={"a": 1}))
    apply(engine, write(ws, "m2", 2, user_id="ann", email="ann@example.com", traits={"b": 2}))
    apply(engine, write(ws, "m3", 3, create=False, user_id="ghost", traits={"c": 3}))
    assert stored(engine, ws) == [("ann", "ann@example.com", {"a": 1, "b": 2})]
