"""The deliverer's heartbeat: a file its claim loop touches on every turn (at most once a
second), so that ``sluice check deliverer`` can tell a loop that turns from a process that
merely lives (docs/operations.md)."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

BEAT_EVERY_S = 1.0


class Heartbeat:
    """Touches ``path``; ``stop`` removes it, so that a stopped deliverer fails its check at
    once rather than when the file has aged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._beat_at = float("-inf")
        self._failing = False

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._beat_at < BEAT_EVERY_S:
            return
        self._beat_at = now
        try:
            self.path.touch()
            self._failing = False
        except OSError as exc:
            if not self._failing:  # once per run of failures
                log.warning("cannot touch the heartbeat file %s: %s", self.path, exc)
            self._failing = True

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def heartbeat_age_s(path: Path) -> float | None:
    """Seconds since ``path`` was last touched; None when there is no such file."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None
