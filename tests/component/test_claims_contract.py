"""One contract, three claim stores: in memory, fakeredis (Lua) and the real Redis.

Each table is a sequence of claims in; what each claim gets out. "ok" is granted, any
other value names the message id holding the conflicting claim.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from sluice.rules.backends.memory import MemoryClaimStore
from sluice.rules.backends.redis import RedisClaimStore
from sluice.rules.claims import ClaimResult, ClaimStore, OpenClaim, OrderClaim

WS = "ws-contract"
MINUTE_MS = 60_000
WINDOW_MS = 20 * MINUTE_MS
RETENTION_S = 7 * 86_400


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[ClaimStore]:
    if request.param == "memory":
        yield MemoryClaimStore()
    elif request.param == "fakeredis":
        yield RedisClaimStore(fakeredis.FakeRedis(), retention_s=RETENTION_S)
    else:
        url: str = request.getfixturevalue("isolated_redis_url")
        client = redis.Redis.from_url(url)
        yield RedisClaimStore(client, retention_s=RETENTION_S)
        client.close()


def outcome(result: ClaimResult) -> str:
    return "ok" if result.granted else str(result.holder)


def order(message_id: str, order_id: str, workspace_id: str = WS) -> OrderClaim:
    return OrderClaim(workspace_id, order_id, message_id)


def email_open(message_id: str, minute: float, user: str = "u1") -> OpenClaim:
    return OpenClaim(WS, user, message_id, int(minute * MINUTE_MS), WINDOW_MS)


ORDER_TABLES = {
    "first wins, later ones name it": (
        [order("m1", "o1"), order("m2", "o1"), order("m3", "o1")],
        ["ok", "m1", "m1"],
    ),
    "the holder claiming again is granted (replay)": (
        [order("m1", "o1"), order("m1", "o1"), order("m2", "o1")],
        ["ok", "ok", "m1"],
    ),
    "orders are independent": (
        [order("m1", "o1"), order("m2", "o2"), order("m3", "o1")],
        ["ok", "ok", "m1"],
    ),
    "workspaces are independent": (
        [order("m1", "o1"), order("m2", "o1", "ws-other")],
        ["ok", "ok"],
    ),
}

OPEN_TABLES = {
    "one per 20 minutes of event time": (
        [
            email_open("a", 0),
            email_open("b", 5),
            email_open("c", 19.99),
            email_open("d", 20),
            email_open("e", 39),
            email_open("f", 40),
        ],
        ["ok", "a", "a", "ok", "d", "ok"],
    ),
    "late arrivals are judged on both sides": (
        [email_open("a", 60), email_open("b", 50), email_open("c", 40), email_open("d", 39)],
        ["ok", "a", "ok", "c"],
    ),
    "the holder claiming again is granted (replay)": (
        [email_open("a", 0), email_open("a", 0), email_open("b", 1)],
        ["ok", "ok", "a"],
    ),
    "users are independent": (
        [email_open("a", 0, "u1"), email_open("b", 0, "u2"), email_open("c", 1, "u1")],
        ["ok", "ok", "a"],
    ),
}


@pytest.mark.parametrize("table", list(ORDER_TABLES), ids=list(ORDER_TABLES))
def test_order_claims(store: ClaimStore, table: str) -> None:
    claims, expected = ORDER_TABLES[table]
    assert [outcome(r) for r in store.claim(claims)] == expected


@pytest.mark.parametrize("table", list(OPEN_TABLES), ids=list(OPEN_TABLES))
def test_email_open_claims(store: ClaimStore, table: str) -> None:
    claims, expected = OPEN_TABLES[table]
    assert [outcome(r) for r in store.claim(claims)] == expected


def test_one_call_or_many_give_the_same_answers(store: ClaimStore) -> None:
    claims: list[Any] = [
        email_open("a", 0),
        order("m1", "o1"),
        email_open("b", 3),
        order("m2", "o1"),
    ]
    assert [outcome(store.claim([claim])[0]) for claim in claims] == ["ok", "ok", "a", "m1"]


def test_a_batch_is_one_round_trip_per_workspace(isolated_redis_url: str) -> None:
    client = redis.Redis.from_url(isolated_redis_url)
    store = RedisClaimStore(client, retention_s=RETENTION_S)
    store.claim([order("warm", "o0")])  # load the script once
    before = _calls(client)
    store.claim(
        [order(f"m{i}", f"o{i % 7}") for i in range(300)]
        + [email_open(f"e{i}", i) for i in range(200)]
    )
    assert _calls(client) - before == 1
    client.close()


def _calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


def test_a_released_claim_can_be_made_again_by_another_message(store: ClaimStore) -> None:
    store.claim([order("m1", "o1"), email_open("a", 0)])
    store.release([order("m1", "o1"), email_open("a", 0)])
    assert [outcome(r) for r in store.claim([order("m2", "o1"), email_open("b", 1)])] == [
        "ok",
        "ok",
    ]


def test_a_release_leaves_a_claim_another_message_holds(store: ClaimStore) -> None:
    store.claim([order("m1", "o1"), email_open("a", 0)])
    store.release([order("m2", "o1"), email_open("b", 0)])  # never granted: not theirs
    assert [outcome(r) for r in store.claim([order("m3", "o1"), email_open("c", 1)])] == [
        "m1",
        "a",
    ]


def test_a_release_keeps_the_other_opens_of_the_user(store: ClaimStore) -> None:
    store.claim([email_open("a", 0), email_open("b", 30)])
    store.release([email_open("a", 0)])
    assert [outcome(r) for r in store.claim([email_open("c", 1), email_open("d", 31)])] == [
        "ok",
        "b",
    ]
