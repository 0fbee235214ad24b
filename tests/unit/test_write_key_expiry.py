"""The gateway's write-key cache and key ends (``sluice.gateway.auth.WriteKeys``): a cached
key stops exactly at its ``expires_at``, stale or not, and a rotation notice makes the
workspace's cached keys due for a lookup without dropping them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from sluice.gateway.auth import WriteKeys
from sluice.gateway.cache import TtlCache
from sluice.store.workspaces import MAX_WRITE_KEY_CHARS, KeyGrant

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Lookup:
    """Answers from a table of grants, or raises like an unreachable database."""

    def __init__(self, grants: dict[str, KeyGrant]) -> None:
        self.grants = grants
        self.calls = 0
        self.down = False

    def __call__(self, write_key: str) -> KeyGrant | None:
        self.calls += 1
        if self.down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return self.grants.get(write_key)


def test_a_cached_key_stops_exactly_at_its_end() -> None:
    clock = Clock()
    lookup = Lookup({"old": KeyGrant("ws", T0 + timedelta(seconds=3))})
    keys = WriteKeys(lookup, ttl_s=3600, clock=clock)
    assert keys.workspace_for("old") == "ws"
    clock.now = T0 + timedelta(seconds=3) - timedelta(microseconds=1)
    assert keys.cached("old") == (True, "ws")
    clock.now = T0 + timedelta(seconds=3)
    assert keys.cached("old") == (True, None)  # still cached, no longer honoured
    assert keys.workspace_for("old") is None
    assert lookup.calls == 1  # the cache answered: the end travelled with it


def test_a_key_without_an_end_works_for_as_long_as_it_is_cached() -> None:
    clock = Clock()
    keys = WriteKeys(Lookup({"k": KeyGrant("ws", None)}), ttl_s=3600, clock=clock)
    assert keys.workspace_for("k") == "ws"
    clock.now = T0 + timedelta(days=365)
    assert keys.cached("k") == (True, "ws")


def test_a_stale_answer_while_the_database_is_away_still_honours_the_end() -> None:
    clock = Clock()
    lookup = Lookup(
        {
            "old": KeyGrant("ws", T0 + timedelta(seconds=10)),
            "new": KeyGrant("ws", None),
        }
    )
    keys = WriteKeys(lookup, ttl_s=0, stale_s=600, clock=clock)
    assert keys.workspace_for("old") == "ws"
    assert keys.workspace_for("new") == "ws"
    lookup.down = True
    assert keys.workspace_for("old") == "ws"  # stale-if-error, within its end
    assert keys.workspace_for("new") == "ws"
    clock.now = T0 + timedelta(seconds=10)
    assert keys.workspace_for("old") is None  # the end holds though the answer is stale
    assert keys.workspace_for("new") == "ws"


def test_a_rotation_notice_makes_that_workspace_look_its_keys_up_again() -> None:
    clock = Clock()
    lookup = Lookup({"a": KeyGrant("ws-a", None), "b": KeyGrant("ws-b", None)})
    keys = WriteKeys(lookup, ttl_s=3600, stale_s=600, clock=clock)
    assert (keys.workspace_for("a"), keys.workspace_for("b")) == ("ws-a", "ws-b")
    # ws-a rotated with --grace-s 0: its key now ends at once.
    lookup.grants["a"] = KeyGrant("ws-a", T0)
    assert keys.cached("a") == (True, "ws-a")  # not told yet: the TTL bounds it
    assert keys.reload("ws-a") == 1
    assert keys.cached("a") == (False, None)
    assert keys.cached("b") == (True, "ws-b")  # other workspaces keep their entries
    calls = lookup.calls
    assert keys.workspace_for("a") is None
    assert lookup.calls == calls + 1


def test_reloading_keeps_the_entry_for_stale_use_and_all_reloads_every_key() -> None:
    lookup = Lookup({"a": KeyGrant("ws-a", None), "b": KeyGrant("ws-b", None)})
    keys = WriteKeys(lookup, ttl_s=3600, stale_s=600)
    keys.workspace_for("a")
    keys.workspace_for("b")
    assert keys.reload() == 2
    lookup.down = True
    assert keys.workspace_for("a") == "ws-a"  # due for a lookup, still a stale answer


def test_expire_where_touches_only_live_matching_entries() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60, cache_misses=True, stale_s=60)
    cache.get("x", lambda: "keep")
    cache.get("y", lambda: "drop")
    assert cache.expire_where(lambda value: value == "drop") == 1
    assert cache.peek("x") == (True, "keep")
    assert cache.peek("y") == (False, None)
    assert cache.expire_where(lambda value: value == "drop") == 0


@pytest.mark.parametrize(
    ("ends_at", "works"),
    [(None, True), (T0 + timedelta(seconds=1), True), (T0, False), (T0 - timedelta(1), False)],
)
def test_a_grant_works_strictly_before_its_end(ends_at: datetime | None, works: bool) -> None:
    assert KeyGrant("ws", ends_at).works_at(T0) is works


def test_a_key_longer_than_any_key_is_refused_without_a_lookup_and_not_remembered() -> None:
    longest = "k" * MAX_WRITE_KEY_CHARS
    lookup = Lookup({longest: KeyGrant("ws", None)})
    keys = WriteKeys(lookup, ttl_s=3600)
    assert keys.workspace_for(longest) == "ws"  # the longest allowed is looked up
    for junk in ("k" * (MAX_WRITE_KEY_CHARS + 1), "x" * 1_000_000):
        assert keys.cached(junk) == (True, None)  # known at once: no such key
        assert keys.workspace_for(junk) is None
    assert lookup.calls == 1
    assert len(keys._cache) == 1


def test_the_cache_holds_each_keys_digest_not_the_key() -> None:
    lookup = Lookup({"sk_live_good": KeyGrant("ws", None)})
    keys = WriteKeys(lookup, ttl_s=3600)
    sent = ["sk_live_good", "u" * MAX_WRITE_KEY_CHARS]
    assert [keys.workspace_for(key) for key in sent] == ["ws", None]
    cached = [*keys._cache._found, *keys._cache._misses]
    assert cached == [hashlib.sha256(key.encode()).digest() for key in sent]
    assert keys.cached("sk_live_good") == (True, "ws")
