"""Property: however a stream is cut into batches, crashed before commit, or redelivered,
the engine's verdicts equal a plain sequential reference model."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.producer.events import Event
from sluice.rules.backends.memory import MemoryRules

WS = "ws-prop"
T0 = datetime(2026, 5, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)  # every grace period is over: no deferrals
WINDOW_MIN = 20

USERS = ["ann", "bob", "cy"]
messages = st.fixed_dictionaries(
    {
        "message_id": st.sampled_from([f"m{i}" for i in range(25)]),
        "kind": st.sampled_from(["confirmation", "email_open", "update", "login"]),
        "user": st.sampled_from(USERS),
        "order": st.sampled_from(["o1", "o2", "o3"]),
        # Multiples of 10 put opens exactly one window apart often: the boundary matters.
        "minute": st.one_of(
            st.integers(min_value=0, max_value=120),
            st.integers(min_value=0, max_value=12).map(lambda n: n * 10),
        ),
    }
)


def to_event(m: dict[str, object]) -> Event:
    kind = str(m["kind"])
    return Event(
        workspace_id=WS,
        message_id=str(m["message_id"]),
        kind=kind,
        name=str(kind),
        user_id=str(m["user"]),
        properties={"orderId": m["order"]} if kind == "confirmation" else {},
        timestamp=T0 + timedelta(minutes=int(str(m["minute"]))),
        received_at=T0,
    )


def reference(stream: list[dict[str, object]]) -> list[str]:
    """The restrictions, one event at a time, written as plainly as possible."""
    first: dict[str, str] = {}
    orders: set[object] = set()
    opens: dict[object, list[int]] = {}
    users: set[object] = set()
    out = []
    for m in stream:
        if m["message_id"] in first:
            verdict = "discarded:duplicate_message"
        elif m["kind"] == "update":
            verdict = "accepted" if m["user"] in users else "rejected:unknown_user"
        elif m["kind"] == "login":
            users.add(m["user"])
            verdict = "accepted"
        elif m["kind"] == "confirmation":
            verdict = "discarded:duplicate_order" if m["order"] in orders else "accepted"
            orders.add(m["order"])
        else:
            minute = int(str(m["minute"]))
            accepted = opens.setdefault(m["user"], [])
            if any(abs(minute - a) < WINDOW_MIN for a in accepted):
                verdict = "discarded:throttled"
            else:
                accepted.append(minute)
                verdict = "accepted"
        first.setdefault(str(m["message_id"]), verdict)
        out.append(verdict)
    return out


def label(status: str, reason: str | None) -> str:
    return f"{status}:{reason}" if reason else status


@settings(max_examples=300, deadline=None)
@given(
    stream=st.lists(messages, min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=39), max_size=8),
    crashes=st.sets(st.integers(min_value=0, max_value=9)),
    redeliveries=st.sets(st.integers(min_value=0, max_value=9)),
)
def test_engine_equals_the_sequential_reference(
    stream: list[dict[str, object]],
    cuts: list[int],
    crashes: set[int],
    redeliveries: set[int],
) -> None:
    expected = reference(stream)
    bounds = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    rules = MemoryRules()
    got: list[str] = []
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        batch_id = f"b{number}"
        events = [to_event(m) for m in stream[start:end]]
        if number in crashes:  # claims made, then the worker died before its commit
            rules.rules.decide(
                batch_id, events, ledger=rules.ledger, users=rules.directory, policies={}, now=NOW
            )
        first = [
            label(d.verdict.status, d.verdict.reason) for d in rules.run(batch_id, events, now=NOW)
        ]
        got += first
        if number in redeliveries:
            again = [
                label(d.verdict.status, d.verdict.reason)
                for d in rules.run(batch_id, events, now=NOW)
            ]
            assert again == first, "a redelivered batch changed its verdicts"
    assert got == expected
