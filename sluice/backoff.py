"""Exponential backoff with jitter: the wait before trying again, shared by a batch's retry
(``sluice.worker.tasks``), a trigger's next attempt and the deliverer's failed database
calls (``sluice.delivery.deliverer``). Each caller brings its own base, cap and jitter."""

from __future__ import annotations

import random
from typing import Literal

Jitter = Literal["full", "equal"]
MAX_DOUBLINGS = 30  # past this the cap has long been reached; keeps 2^n a finite float


def backoff_s(attempt: int, *, base_s: float, cap_s: float, jitter: Jitter) -> float:
    """The wait in seconds after ``attempt`` (1 for the first) failed: a ceiling of
    ``base_s`` · 2^(attempt-1), at most ``cap_s``, with ``full`` jitter (anywhere from 0 to
    the ceiling) or ``equal`` jitter (from half the ceiling to the ceiling)."""
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, MAX_DOUBLINGS))
    if jitter == "full":
        return random.uniform(0, ceiling)
    return ceiling / 2 + random.uniform(0, ceiling / 2)
