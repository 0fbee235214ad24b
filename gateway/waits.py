"""How many ``Prefer: wait`` requests each workspace has waiting in this gateway process:
past ``SLUICE_MAX_WAITS_PER_WORKSPACE``, a request is answered at once, as if it had not
asked to wait (no ``Preference-Applied``). A waiting request polls the database, so one
workspace's waits would otherwise take the worker threads and connections every request
needs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class WaitSlots:
    """Counts the waits under way per workspace. Used from the event loop only (no lock)."""

    def __init__(self, per_workspace: int) -> None:
        self.per_workspace = per_workspace
        self._waiting: Counter[str] = Counter()

    def waiting(self, workspace_id: str) -> int:
        return self._waiting[workspace_id]

    @contextmanager
    def slot(self, workspace_id: str) -> Iterator[bool]:
        """Whether the workspace may wait now; its slot is held until the block ends."""
        if self._waiting[workspace_id] >= self.per_workspace:
            yield False
            return
        self._waiting[workspace_id] += 1
        try:
            yield True
        finally:
            self._waiting[workspace_id] -= 1
            if not self._waiting[workspace_id]:
                del self._waiting[workspace_id]
