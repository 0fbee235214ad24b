"""A small thread-safe cache with expiry, in front of per-request database lookups."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Entry = tuple[float, V | None]  # (expires at, on the monotonic clock; the value)


class TtlCache(Generic[K, V]):
    """Remembers loaded values for ``ttl_s``; ``None`` results only if ``cache_misses``.

    Found values and misses are kept apart, each bounded (``max_entries``, ``max_misses``)
    and each evicting its least recently used entry when full: a flood of lookups that
    find nothing (unknown keys) pushes out older misses only, never a found value.

    With ``stale_s``, a load that raises one of ``stale_if`` is answered with the expired
    entry instead, for up to ``stale_s`` past its expiry (stale-if-error): the database
    being away for a while need not stop what only needs an answer it gave a moment ago."""

    def __init__(
        self,
        *,
        ttl_s: float,
        cache_misses: bool,
        max_entries: int = 10_000,
        max_misses: int = 1_000,
        stale_s: float = 0.0,
        stale_if: tuple[type[Exception], ...] = (),
    ) -> None:
        self._ttl_s = ttl_s
        self._cache_misses = cache_misses
        self._stale_s = stale_s
        self._stale_if = stale_if
        self._found: OrderedDict[K, Entry[V]] = OrderedDict()
        self._misses: OrderedDict[K, Entry[V]] = OrderedDict()
        self._max_entries = max_entries
        self._max_misses = max_misses
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._found) + len(self._misses)

    def peek(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` for a live entry, ``(False, None)`` otherwise; never loads (so
        an async caller can answer a hit without a trip to a worker thread)."""
        hit = self._entry(key)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def expire_where(self, matches: Callable[[V | None], bool]) -> int:
        """Make the live entries whose value ``matches`` due for a reload now; they stay
        usable as stale answers (``stale_s`` from now). Returns how many."""
        now = time.monotonic()
        count = 0
        with self._lock:
            for entries in (self._found, self._misses):
                for key, (expires, value) in entries.items():
                    if expires > now and matches(value):
                        entries[key] = (now, value)
                        count += 1
        return count

    def get(self, key: K, load: Callable[[], V | None]) -> V | None:
        found, value = self.peek(key)
        if found:
            return value
        now = time.monotonic()
        try:
            value = load()
        except self._stale_if:
            stale = self._entry(key)
            if stale is None or stale[0] + self._stale_s <= time.monotonic():
                raise
            return stale[1]
        if value is not None or self._cache_misses:
            self._store(key, (now + self._ttl_s, value))
        return value

    def _entry(self, key: K) -> Entry[V] | None:
        """The key's entry, live or not, marked as just used."""
        with self._lock:
            for entries in (self._found, self._misses):
                entry = entries.get(key)
                if entry is not None:
                    entries.move_to_end(key)
                    return entry
        return None

    def _store(self, key: K, entry: Entry[V]) -> None:
        if entry[1] is None:
            home, other, bound = self._misses, self._found, self._max_misses
        else:
            home, other, bound = self._found, self._misses, self._max_entries
        with self._lock:
            other.pop(key, None)
            home[key] = entry
            home.move_to_end(key)
            while len(home) > bound:
                home.popitem(last=False)  # the least recently used
