"""The gateway's lookup cache: hits within the TTL, misses cached only when asked to."""

from __future__ import annotations

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
