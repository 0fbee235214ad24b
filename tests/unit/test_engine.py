"""The restrictions as tables: a sequence of events in, their verdicts out (no sleeps;
time is passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice.producer.events import Event
from sluice.rules.backends.memory import MemoryRules
from sluice.rules.bots import BotDetector
from sluice.rules.engine import RulePolicy

WS = "ws-engine"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Safari/605.1.15"
)


def ev(
    message_id: str,
    kind: str,
    *,
    minute: float = 0,
    received_minute: float | None = None,
    **fields: Any,
) -> Event:
    received = T0 + timedelta(minutes=minute if received_minute is None else received_minute)
    return Event(
        workspace_id=WS,
        message_id=message_id,
        kind=kind,
        timestamp=T0 + timedelta(minutes=minute),
        received_at=received,
        **fields,
    )


def verdicts(
    rules: MemoryRules,
    batch: list[Event],
    *,
    batch_id: str = "b1",
    now: datetime = NOW,
    policy: RulePolicy | None = None,
) -> list[str]:
    policies = {WS: policy} if policy else None
    return [
        f"{d.verdict.status}:{d.verdict.reason}" if d.verdict.reason else str(d.verdict.status)
        for d in rules.run(batch_id, batch, now=now, policies=policies)
    ]


TABLES: dict[str, tuple[list[Event], list[str]]] = {
    "one confirmation per order id (orderId, order_id and an adapter's order_id)": (
        [
            ev("c1", "confirmation", user_id="u", properties={"orderId": "o1"}),
            ev("c2", "confirmation", user_id="u", properties={"order_id": "o1"}),
            ev("c3", "confirmation", user_id="u", order_id="o1"),
            ev("c4", "confirmation", user_id="u", properties={"orderId": 2}),
            ev("c5", "confirmation", user_id="u", properties={"orderId": "2"}),
        ],
        [
            "accepted",
            "discarded:duplicate_order",
            "discarded:duplicate_order",
            "accepted",
            "discarded:duplicate_order",
        ],
    ),
    "a confirmation without an order id cannot be deduplicated: accepted": (
        [ev("c1", "confirmation", user_id="u"), ev("c2", "confirmation", user_id="u")],
        ["accepted", "accepted"],
    ),
    "email opens: one per user per 20 minutes of event time": (
        [
            ev("e1", "email_open", user_id="u", minute=0),
            ev("e2", "email_open", user_id="u", minute=19),
            ev("e3", "email_open", user_id="v", minute=19),
            ev("e4", "email_open", email="U@x.io", minute=5),
            ev("e5", "email_open", email="u@X.io", minute=6),
            ev("e6", "email_open", user_id="u", minute=20),
        ],
        [
            "accepted",
            "discarded:throttled",
            "accepted",
            "accepted",
            "discarded:throttled",
            "accepted",
        ],
    ),
    "a repeated message id keeps its first verdict, the repeat is duplicate_message": (
        [ev("m1", "custom", name="A", user_id="u"), ev("m1", "custom", name="A", user_id="u")],
        ["accepted", "discarded:duplicate_message"],
    ),
    "bots are dropped: crawler user agent, client flag": (
        [
            ev("b1", "custom", name="V", user_id="u", context={"user_agent": GOOGLEBOT}),
            ev("b2", "custom", name="V", user_id="u", context={"bot": True}),
            ev("b3", "custom", name="V", user_id="u", context={"user_agent": SAFARI}),
        ],
        ["discarded:bot", "discarded:bot", "accepted"],
    ),
    "an update needs its user; a login earlier in the batch creates it": (
        [
            ev("u1", "update", user_id="ann", traits={"plan": "pro"}),
            ev("l1", "login", user_id="ann"),
            ev("u2", "update", user_id="ann", traits={"plan": "max"}),
            ev("u3", "update", email="ANN@example.com"),
        ],
        ["rejected:unknown_user", "accepted", "accepted", "rejected:unknown_user"],
    ),
    "an event that creates its user (an adapter's creates_user) makes later updates valid": (
        [
            ev("c1", "custom", name="Visit", email="cy@example.com"),
            ev("u1", "update", email="cy@example.com"),
            ev("c2", "custom", name="Visit", email="cy@example.com", creates_user=True),
            ev("u2", "update", email="cy@example.com"),
            ev("u3", "update", email="dee@example.com", creates_user=True),  # needs its user
        ],
        ["accepted", "rejected:unknown_user", "accepted", "accepted", "rejected:unknown_user"],
    ),
    "a login by email makes later updates by either case of the email valid": (
        [ev("l1", "login", email="Bo@Example.com"), ev("u1", "update", email="bo@example.com")],
        ["accepted", "accepted"],
    ),
}


@pytest.mark.parametrize("name", list(TABLES), ids=list(TABLES))
def test_tables(name: str) -> None:
    batch, expected = TABLES[name]
    assert verdicts(MemoryRules(), batch) == expected


def test_verdicts_hold_across_batches_and_a_redelivery_replays_them() -> None:
    rules = MemoryRules()
    first = [
        ev("c1", "confirmation", user_id="u", properties={"orderId": "o1"}),
        ev("e1", "email_open", user_id="u", minute=0),
    ]
    assert verdicts(rules, first, batch_id="b1") == ["accepted", "accepted"]
    second = [
        ev("c2", "confirmation", user_id="u", properties={"orderId": "o1"}),
        ev("e2", "email_open", user_id="u", minute=10),
        ev("c1", "confirmation", user_id="u", properties={"orderId": "o1"}),
    ]
    assert verdicts(rules, second, batch_id="b2") == [
        "discarded:duplicate_order",
        "discarded:throttled",
        "discarded:duplicate_message",
    ]
    assert verdicts(rules, first, batch_id="b1") == ["accepted", "accepted"]  # redelivered
    assert verdicts(rules, second, batch_id="b2") == [
        "discarded:duplicate_order",
        "discarded:throttled",
        "discarded:duplicate_message",
    ]


def test_replay_of_a_backlog_gets_the_verdicts_of_live_traffic() -> None:
    opens = [ev(f"e{i}", "email_open", user_id="u", minute=i * 7) for i in range(12)]
    live = MemoryRules()
    live_verdicts = [
        verdicts(live, [e], batch_id=f"b{i}", now=e.received_at)[0] for i, e in enumerate(opens)
    ]
    backlog = verdicts(MemoryRules(), opens, now=NOW + timedelta(days=3))
    assert backlog == live_verdicts
    assert live_verdicts.count("accepted") == 4  # minutes 0, 21, 42, 63


@pytest.mark.parametrize(
    ("now_minute", "expected"),
    [
        (0.25, "queued"),  # 15 s after it arrived: still within the 30 s grace
        (0.5, "rejected:unknown_user"),  # grace over
    ],
)
def test_unknown_user_waits_for_the_grace_period(now_minute: float, expected: str) -> None:
    rules = MemoryRules()
    update = ev("u1", "update", user_id="late", received_minute=0)
    now = T0 + timedelta(minutes=now_minute)
    [decided] = rules.run("b1", [update], now=now)
    got = (
        str(decided.verdict.status)
        if decided.verdict.reason is None
        else (f"{decided.verdict.status}:{decided.verdict.reason}")
    )
    assert got == expected
    if expected == "queued":
        assert decided.retry_at == T0 + timedelta(seconds=30)


def test_an_update_deferred_during_the_grace_is_accepted_once_its_user_exists() -> None:
    rules = MemoryRules()
    update = ev("u1", "update", user_id="late", traits={"plan": "pro"})
    assert verdicts(rules, [update], now=T0 + timedelta(seconds=5)) == ["queued"]
    assert verdicts(rules, [ev("l1", "login", user_id="late")], batch_id="b2") == ["accepted"]
    assert verdicts(rules, [update], batch_id="b1.d", now=T0 + timedelta(seconds=31)) == [
        "accepted"
    ]


def test_bot_flag_mode_keeps_bots_flagged_and_they_claim_nothing() -> None:
    rules = MemoryRules(BotDetector(["10.9.0.0/16"]))
    flag = RulePolicy(bot_mode="flag")
    batch = [
        ev("e1", "email_open", user_id="u", context={"ip": "10.9.3.4"}),
        ev("e2", "email_open", user_id="u", minute=1),
    ]
    decided = rules.run("b1", batch, now=NOW, policies={WS: flag})
    assert [(d.verdict.status, d.verdict.reason, d.bot) for d in decided] == [
        ("accepted", "bot", True),
        ("accepted", None, False),
    ]
    assert "10.9.0.0/16" in str(decided[0].verdict.detail)


def test_window_and_grace_are_per_workspace_policies() -> None:
    short = RulePolicy(email_open_window_s=60, unknown_user_grace_s=0)
    batch = [
        ev("e1", "email_open", user_id="u"),
        ev("e2", "email_open", user_id="u", minute=1),
        ev("u1", "update", user_id="x", received_minute=60),
    ]
    assert verdicts(MemoryRules(), batch, policy=short) == [
        "accepted",
        "accepted",
        "rejected:unknown_user",
    ]


@pytest.mark.parametrize(
    ("properties", "order"),
    [
        ({"orderId": "A-1"}, "A-1"),
        ({"order_id": 42}, "42"),
        ({"orderId": True}, None),
        ({"orderId": ""}, None),
        # A vendor's own place is its adapter's to read, not the rules'.
        ({"details": {"unique": {"key": "k-1"}}}, None),
    ],
)
def test_what_names_an_order(properties: dict[str, Any], order: str | None) -> None:
    from sluice.rules.engine import order_id_of

    event = Event(
        workspace_id="ws", kind="confirmation", name="Order", user_id="u", properties=properties
    )
    assert order_id_of(event) == order


def test_an_adapters_order_id_comes_first() -> None:
    from sluice.rules.engine import order_id_of

    event = Event(
        workspace_id="ws",
        kind="confirmation",
        name="Order",
        user_id="u",
        properties={"orderId": "A-1"},
        order_id="B-2",
    )
    assert order_id_of(event) == "B-2"
