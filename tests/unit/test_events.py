"""The canonical event and the queue envelope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from sluice.producer import Event, EventKind
from sluice.producer.envelope import Envelope, InvalidEvent, PoisonEnvelopeError, decode_envelope

WS = "ws-1"


def test_defaults_message_id_name_and_timestamp() -> None:
    received = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = Event(workspace_id=WS, kind=EventKind.LOGIN, email="a@b.co", received_at=received)  # type: ignore[call-arg]
    assert len(event.message_id) == 36
    assert event.name == "login"
    assert event.timestamp == received


def test_timestamps_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = Event(
        workspace_id=WS,
        kind="custom",
        name="E",
        timestamp=datetime(2026, 1, 1, 12, tzinfo=plus_two),
        sent_at=datetime(2026, 1, 1, 10),
    )  # naive: taken as UTC
    assert event.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert event.sent_at == datetime(2026, 1, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "custom"}, "name"),
        ({"kind": "custom", "name": ""}, "name"),
        ({"kind": "update"}, "needs user_id or email"),
        ({"kind": "login"}, "needs user_id, email or anonymous_id"),
        ({"kind": "update", "anonymous_id": "a"}, "needs user_id or email"),
        ({"kind": "custom", "name": "E\x00"}, "NUL"),
        ({"kind": "custom", "name": "E", "traits": {"a": ["ok", {"b": "\x00"}]}}, "NUL"),
        ({"kind": "teleport", "name": "E"}, "kind"),
        ({"kind": "custom", "name": "E", "message_id": "m" * 101}, "message_id"),
        ({"kind": "custom", "name": "E", "surprise": 1}, "surprise"),
    ],
)
def test_invalid_events_name_the_problem(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Event.model_validate({"workspace_id": WS, **fields})
    assert problem in str(caught.value)


def test_an_envelope_round_trips_through_its_wire_form() -> None:
    import orjson

    envelope = Envelope(
        events=[
            Event(workspace_id=WS, kind="custom", name=f"E{i}", properties={"i": i})
            for i in range(3)
        ]
    )
    decoded = decode_envelope(orjson.loads(orjson.dumps([orjson.Fragment(envelope.wire)]))[0])
    assert decoded.batch_id == envelope.batch_id
    assert decoded.items == envelope.events


def test_an_envelope_of_validated_events_is_the_same_on_the_wire() -> None:
    import orjson

    events = [Event(workspace_id=WS, kind="custom", name=f"E{i}") for i in range(3)]
    built, validated = Envelope.of(events, batch_id="b-1"), Envelope(batch_id="b-1", events=events)
    assert orjson.loads(built.wire) | {"created_at": None} == orjson.loads(validated.wire) | {
        "created_at": None
    }
    assert len(Envelope.of(events).batch_id) == 32  # generated when not given
    assert decode_envelope(orjson.loads(built.wire)).items == events
    with pytest.raises(ValueError, match="1 to 1000 events"):
        Envelope.of([])
    with pytest.raises(ValueError, match="1 to 1000 events"):
        Envelope.of(events * 334)
    with pytest.raises(TypeError):
        Envelope.of([{"kind": "custom"}])  # type: ignore[list-item]


def test_one_bad_event_does_not_spoil_its_batch() -> None:
    good = Event(workspace_id=WS, kind="custom", name="E").model_dump(mode="json")
    decoded = decode_envelope({"v": 1, "batch_id": "b", "events": [good, {"kind": "custom"}]})
    assert isinstance(decoded.items[0], Event)
    bad = decoded.items[1]
    assert isinstance(bad, InvalidEvent)
    assert "workspace_id: missing from the queued event" in bad.error
    assert (bad.workspace_id, bad.message_id) == (None, None)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {"v": 1, "events": [{}]},
        {"v": 1, "batch_id": "b", "events": []},
        {"v": 2, "batch_id": "b", "events": [{}]},
    ],
)
def test_what_is_not_an_envelope_is_poison(payload: object) -> None:
    with pytest.raises(PoisonEnvelopeError):
        decode_envelope(payload)


def test_the_worker_never_fills_in_identity_or_time() -> None:
    """A queued event without message_id or timestamp is invalid at the worker: filling
    them in there would give every redelivery a new id (and store it twice)."""
    complete = Event(workspace_id=WS, kind="custom", name="E").model_dump(mode="json")
    for missing in ("message_id", "timestamp", "received_at"):
        raw = {k: v for k, v in complete.items() if k != missing}
        [item] = decode_envelope({"v": 1, "batch_id": "b", "events": [raw]}).items
        assert isinstance(item, InvalidEvent)
        assert f"{missing}: missing from the queued event" in item.error


def test_fields_from_a_newer_producer_are_ignored_by_the_worker() -> None:
    raw = {
        **Event(workspace_id=WS, kind="custom", name="E").model_dump(mode="json"),
        "added_in_a_later_version": 1,
    }
    [item] = decode_envelope({"v": 1, "batch_id": "b", "events": [raw]}).items
    assert isinstance(item, Event)


def test_the_adapters_hints_stay_out_of_the_json_while_unset() -> None:
    plain = Event(workspace_id=WS, kind=EventKind.CUSTOM, name="Visit", user_id="u")
    assert "order_id" not in plain.model_dump_json() and "creates_user" not in plain.model_dump()
    hinted = plain.model_copy(update={"order_id": "o-1", "creates_user": True})
    assert '"order_id":"o-1"' in hinted.model_dump_json()


@pytest.mark.parametrize(
    ("details", "order"),
    [({"unique": {"key": "k-1"}}, "k-1"), ({"unique": {"key": True}}, None), (None, None)],
)
def test_a_bento_event_queued_by_an_older_gateway_keeps_its_meaning(
    details: dict[str, object] | None, order: str | None
) -> None:
    # Queued before the Bento adapter set order_id and creates_user: the worker still
    # dedups its purchase by details.unique.key and creates its user.
    stamp = "2026-11-01T00:00:00+00:00"
    old = {
        "message_id": "m1",
        "workspace_id": WS,
        "kind": "confirmation",
        "name": "$purchase",
        "email": "a@example.com",
        "properties": {"details": details} if details else {},
        "timestamp": stamp,
        "received_at": stamp,
        "source": "bento",
    }
    [event] = decode_envelope({"v": 1, "batch_id": "b", "events": [old]}).items
    assert isinstance(event, Event)
    assert (event.order_id, event.creates_user) == (order, True)
    other = decode_envelope({"v": 1, "batch_id": "b", "events": [{**old, "source": "client"}]})
    assert isinstance(other.items[0], Event)
    assert (other.items[0].order_id, other.items[0].creates_user) == (None, None)


def test_the_raw_copy_is_the_event_as_mapped_without_the_hints() -> None:
    from sluice.rules import Verdict
    from sluice.rules.decisions import Decision
    from sluice.worker.ingest.records import raw_copy

    event = Event(
        workspace_id=WS, kind=EventKind.CONFIRMATION, name="$purchase", email="a@example.com"
    ).model_copy(update={"order_id": "o-1", "creates_user": True})
    raw = raw_copy(Decision(WS, event.message_id, Verdict.accept(), event))
    assert "order_id" not in raw and "creates_user" not in raw and "$purchase" in raw
