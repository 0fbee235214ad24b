"""Segment group and alias calls keep groupId and previousId: the adapter maps them onto the
canonical event, the queue carries them, the worker's row stores them, and the Python
client sends them."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from sluice.gateway.errors import ApiError
from sluice.gateway.segment import to_event
from sluice.producer import Event, EventClient, EventKind
from sluice.producer.envelope import Envelope, decode_envelope
from sluice.producer.transport import MemoryTransport
from sluice.rules import Verdict
from sluice.rules.decisions import Decision
from sluice.worker.ingest.records import event_row, raw_copy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def segment(call: dict[str, object], call_type: str) -> Event:
    return to_event(call, call_type, workspace_id="ws", received_at=NOW)  # type: ignore[arg-type]


def test_group_keeps_its_group_id_and_its_traits_describe_the_group() -> None:
    event = segment(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme Inc", "email": "billing@acme.example"},
        },
        "group",
    )
    assert (event.kind, event.name, event.user_id) == (EventKind.CUSTOM, "group", "u1")
    assert (event.group_id, event.previous_id) == ("acme", None)
    assert event.traits == {"name": "Acme Inc", "email": "billing@acme.example"}
    assert event.email is None  # the group's address is not the user's


def test_alias_keeps_its_previous_id_and_numeric_ids_become_text() -> None:
    event = segment({"type": "alias", "userId": 42, "previousId": 7}, "alias")
    assert (event.name, event.user_id, event.previous_id, event.group_id) == (
        "alias",
        "42",
        "7",
        None,
    )


@pytest.mark.parametrize(
    ("call", "call_type", "field"),
    [
        ({"type": "group", "userId": "u1"}, "group", "groupId"),
        ({"type": "group", "userId": "u1", "groupId": ""}, "group", "groupId"),
        ({"type": "alias", "userId": "u1"}, "alias", "previousId"),
    ],
)
def test_group_and_alias_need_their_ids(call, call_type, field) -> None:
    with pytest.raises(ApiError) as raised:
        segment(call, call_type)
    assert (raised.value.status_code, raised.value.field) == (400, field)


def test_other_calls_carry_neither_and_their_envelopes_are_unchanged() -> None:
    event = segment({"type": "track", "userId": "u1", "event": "E", "groupId": "g"}, "track")
    assert (event.group_id, event.previous_id) == (None, None)
    encoded = orjson.loads(Envelope.of([event]).wire)["events"][0]
    assert "group_id" not in encoded and "previous_id" not in encoded


def test_the_queue_carries_them_and_the_row_stores_them() -> None:
    group = Event(workspace_id="ws", kind=EventKind.CUSTOM, name="group", user_id="u", group_id="g")
    alias = Event(
        workspace_id="ws", kind=EventKind.CUSTOM, name="alias", user_id="u", previous_id="p"
    )
    decoded = decode_envelope(orjson.loads(Envelope.of([group, alias]).wire))
    assert decoded.items == [group, alias]

    decision = Decision("ws", group.message_id, Verdict.accept(), event=group)
    row = event_row(decision, "b-1", NOW)
    assert (row["group_id"], row["previous_id"]) == ("g", None)
    assert orjson.loads(raw_copy(decision))["group_id"] == "g"


def test_the_python_client_sends_them() -> None:
    transport = MemoryTransport()
    with EventClient("ws", transport=transport) as client:
        client.send_batch(
            [
                {"kind": "custom", "name": "group", "user_id": "u", "group_id": "acme"},
                {"kind": "custom", "name": "alias", "user_id": "u", "previous_id": "anon-1"},
            ]
        )
    group, alias = transport.envelopes[0].events
    assert (group.group_id, alias.previous_id) == ("acme", "anon-1")


def test_a_nul_character_is_refused_in_them() -> None:
    with pytest.raises(ValueError, match="group_id contains a NUL"):
        Event(workspace_id="ws", kind=EventKind.CUSTOM, name="group", group_id="a\x00b")
