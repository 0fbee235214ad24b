"""The gateway's lookup cache: hits within the TTL, misses cached only when asked to, each
kind bounded on its own with least-recently-used eviction."""

from __future__ import annotations

import pytest

from sluice.gateway.cache import TtlCache


class Loader:
    def __init__(self, value: str | None) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self.value


def test_a_hit_within_the_ttl_does_not_load_again() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60, cache_misses=False)
    load = Loader("v")
    assert [cache.get("k", load) for _ in range(3)] == ["v", "v", "v"]
    assert load.calls == 1


def test_misses_are_remembered_only_when_asked() -> None:
    keys: TtlCache[str, str] = TtlCache(ttl_s=60, cache_misses=True)
    definitions: TtlCache[str, str] = TtlCache(ttl_s=60, cache_misses=False)
    for cache, loads in ((keys, 1), (definitions, 2)):
        load = Loader(None)
        cache.get("missing", load)
        cache.get("missing", load)
        assert load.calls == loads


def test_expired_entries_are_loaded_again_and_the_cache_stays_bounded() -> None:
    expired: TtlCache[str, str] = TtlCache(ttl_s=0, cache_misses=True)
    load = Loader("v")
    expired.get("k", load)
    expired.get("k", load)
    assert load.calls == 2
    small: TtlCache[int, str] = TtlCache(ttl_s=60, cache_misses=True, max_entries=3)
    for key in range(10):
        small.get(key, Loader("v"))
    assert len(small) == 3


def test_a_full_cache_evicts_its_least_recently_used_entry_not_everything() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60, cache_misses=False, max_entries=3)
    for key in ("a", "b", "c"):
        cache.get(key, Loader(key))
    assert cache.peek("a") == (True, "a")  # used: "b" is now the least recently used
    cache.get("d", Loader("d"))
    assert len(cache) == 3
    assert cache.peek("b") == (False, None)
    assert [cache.peek(key) for key in ("a", "c", "d")] == [(True, "a"), (True, "c"), (True, "d")]


def test_misses_are_bounded_apart_and_never_push_out_found_values() -> None:
    cache: TtlCache[str, str] = TtlCache(
        ttl_s=60, cache_misses=True, max_entries=100, max_misses=10
    )
    for key in ("good-1", "good-2"):
        cache.get(key, Loader(key))
    for n in range(1000):  # a flood of lookups that find nothing
        cache.get(f"junk-{n}", Loader(None))
    assert len(cache) == 2 + 10
    assert cache.peek("good-1") == (True, "good-1")
    assert cache.peek("good-2") == (True, "good-2")
    assert cache.peek("junk-999") == (True, None)  # the latest misses are remembered
    assert cache.peek("junk-0") == (False, None)


def test_a_miss_that_is_found_later_moves_to_the_found_values() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=0, cache_misses=True, max_entries=1, max_misses=1)
    cache.get("k", Loader(None))
    cache.get("k", Loader("v"))  # expired (ttl 0): loaded again, found this time
    cache.get("other", Loader(None))  # fills the misses; "k" is not among them any more
    assert len(cache) == 2


class DatabaseDown(Exception):
    pass


def failing() -> str | None:
    raise DatabaseDown("connection refused")


def test_an_expired_answer_stands_in_while_the_source_is_down_within_its_stale_window() -> None:
    cache: TtlCache[str, str] = TtlCache(
        ttl_s=0, cache_misses=True, stale_s=60, stale_if=(DatabaseDown,)
    )
    assert cache.get("k", Loader("ws-1")) == "ws-1"
    assert cache.get("k", failing) == "ws-1"  # expired, the source is down: the last answer
    with pytest.raises(DatabaseDown):
        cache.get("never-seen", failing)
    with pytest.raises(ZeroDivisionError):  # only the named errors are covered
        cache.get("k", lambda: str(1 / 0))


def test_past_the_stale_window_the_error_is_the_answer() -> None:
    cache: TtlCache[str, str] = TtlCache(
        ttl_s=0, cache_misses=True, stale_s=0, stale_if=(DatabaseDown,)
    )
    cache.get("k", Loader("ws-1"))
    with pytest.raises(DatabaseDown):
        cache.get("k", failing)
