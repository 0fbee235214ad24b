"""A small thread-safe cache with expiry, in front of per-request database lookups."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Remembers loaded values for ``ttl_s``; ``None`` results only if ``cache_misses``.
    When full it starts over (lookups are cheap to redo; memory stays bounded).

    With ``stale_s``, a load that raises one of ``stale_if`` is answered with the expired
    entry instead, for up to ``stale_s`` past its expiry (stale-if-error): the database
    being away for a while need not stop what only needs an answer it gave a moment ago."""

    def __init__(
        self,
        *,
        ttl_s: float,
        cache_misses: bool,
        max_entries: int = 10_000,
        stale_s: float = 0.0,
        stale_if: tuple[type[Exception], ...] = (),
    ) -> None:
        self._ttl_s = ttl_s
        self._cache_misses = cache_misses
        self._max_entries = max_entries
        self._stale_s = stale_s
        self._stale_if = stale_if
        self._entries: dict[K, tuple[float, V | None]] = {}
        self._lock = threading.Lock()

    def peek(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` for a live entry, ``(False, None)`` otherwise; never loads (so
        an async caller can answer a hit without a trip to a worker thread)."""
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def expire_where(self, matches: Callable[[V | None], bool]) -> int:
        """Make the live entries whose value ``matches`` due for a reload now; they stay
        usable as stale answers (``stale_s`` from now). Returns how many."""
        now = time.monotonic()
        with self._lock:
            due = [
                key
                for key, (expires, value) in self._entries.items()
                if expires > now and matches(value)
            ]
            for key in due:
                self._entries[key] = (now, self._entries[key][1])
        return len(due)

    def get(self, key: K, load: Callable[[], V | None]) -> V | None:
        found, value = self.peek(key)
        if found:
            return value
        now = time.monotonic()
        try:
            value = load()
        except self._stale_if:
            with self._lock:
                stale = self._entries.get(key)
            if stale is None or stale[0] + self._stale_s <= time.monotonic():
                raise
            return stale[1]
        if value is not None or self._cache_misses:
            with self._lock:
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
                self._entries[key] = (now + self._ttl_s, value)
        return value
