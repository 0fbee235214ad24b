"""The gateway's lookup cache: hits within the TTL, misses cached only when asked to."""

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
    assert len(small._entries) <= 3


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
