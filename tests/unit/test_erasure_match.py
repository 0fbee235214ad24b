"""Who an erasure's person is in stored text: raw copies (whole or truncated) and dead
letters rewritten without their events; the record's subject. No services needed."""

from __future__ import annotations

import hashlib

import orjson

from sluice.ops.erasure import subject_of
from sluice.ops.erasure_match import Person, letter_change

PERSON = Person("ws", frozenset({"u1"}), frozenset({"ann@example.com"}))


def raw(**fields: object) -> str:
    return orjson.dumps({"message_id": "m", "workspace_id": "ws", **fields}).decode()


def test_whole_raw_copies_are_read_by_their_identity_fields() -> None:
    assert PERSON.named_in_text(raw(user_id="u1"))
    assert PERSON.named_in_text(raw(email="Ann@Example.COM"))
    assert not PERSON.named_in_text(raw(user_id="u12"))
    assert not PERSON.named_in_text(raw(user_id="x", traits={"note": "u1 ann@example.com"}))


def test_truncated_raw_copies_are_read_by_their_identity_members() -> None:
    cut = raw(user_id="u1", properties={"long": "x" * 5000})[:4096] + "…"
    assert PERSON.named_in_text(cut)
    assert PERSON.named_in_text(raw(email="ANN@example.com", p="x" * 5000)[:4096] + "…")
    assert not PERSON.named_in_text(raw(user_id="u12", p="x" * 5000)[:4096] + "…")


def test_a_dead_letter_loses_the_persons_events_of_their_workspace_only() -> None:
    mine = {"workspace_id": "ws", "message_id": "a", "email": "ANN@example.com"}
    other_workspace = {**mine, "workspace_id": "ws2", "message_id": "b"}
    someone_else = {"workspace_id": "ws", "message_id": "c", "user_id": "u2"}
    letter = {"v": 1, "batch_id": "b1", "events": [mine, other_workspace, someone_else]}

    change = letter_change(7, orjson.dumps(letter).decode(), PERSON)

    assert change is not None
    assert (change.stripped, change.events_left, change.message_ids) == (1, 2, frozenset({"a"}))
    assert change.payload is not None
    assert orjson.loads(change.payload) == {**letter, "events": [other_workspace, someone_else]}


def test_a_dead_letter_of_theirs_only_or_unreadable_is_deleted() -> None:
    only = {"v": 1, "batch_id": "b", "events": [{"workspace_id": "ws", "user_id": "u1"}]}
    change = letter_change(1, orjson.dumps(only).decode(), PERSON)
    assert change is not None and change.payload is None
    truncated = '{"v": 1, "events": [{"workspace_id": "ws", "user_id": "u1", "x": "'
    gone = letter_change(2, truncated, PERSON)
    assert gone is not None and gone.payload is None
    unrelated = {"v": 1, "batch_id": "b", "events": [{"workspace_id": "ws", "user_id": "u2"}]}
    assert letter_change(3, orjson.dumps(unrelated).decode(), PERSON) is None


def test_the_subject_is_a_hash_of_workspace_kind_and_identifier() -> None:
    expected = hashlib.sha256(b"ws:email:ann@example.com").hexdigest()
    assert subject_of("ws", "email", "Ann@Example.com") == expected
    assert subject_of("ws", "user_id", "U1") != subject_of("ws", "user_id", "u1")
    assert subject_of("ws2", "email", "ann@example.com") != expected
