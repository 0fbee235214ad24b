"""The shared backoff (``sluice.backoff``): the ceiling doubles from the base up to the cap,
and the jitter decides where under the ceiling a wait falls."""

from __future__ import annotations

import random

import pytest

from sluice.backoff import backoff_s


def ceiling_of(attempt: int, base_s: float, cap_s: float) -> float:
    return min(cap_s, base_s * 2.0 ** (attempt - 1))


@pytest.mark.parametrize(("base_s", "cap_s"), [(1.0, 60.0), (5.0, 450.0), (0.5, 10.0)])
def test_full_jitter_falls_anywhere_under_the_ceiling(base_s: float, cap_s: float) -> None:
    for attempt in range(1, 40):
        delay = backoff_s(attempt, base_s=base_s, cap_s=cap_s, jitter="full")
        assert 0 <= delay <= ceiling_of(attempt, base_s, cap_s)


@pytest.mark.parametrize(("base_s", "cap_s"), [(1.0, 60.0), (5.0, 450.0), (0.5, 10.0)])
def test_equal_jitter_keeps_at_least_half_the_ceiling(base_s: float, cap_s: float) -> None:
    for attempt in range(1, 40):
        delay = backoff_s(attempt, base_s=base_s, cap_s=cap_s, jitter="equal")
        ceiling = ceiling_of(attempt, base_s, cap_s)
        assert ceiling / 2 <= delay <= ceiling


def test_each_jitter_is_one_random_draw_under_its_ceiling() -> None:
    random.seed(7)
    full, half = random.uniform(0, 8.0), 4.0
    random.seed(7)
    equal = half + random.uniform(0, half)
    random.seed(7)
    assert backoff_s(4, base_s=1.0, cap_s=60.0, jitter="full") == full
    random.seed(7)
    assert backoff_s(4, base_s=1.0, cap_s=60.0, jitter="equal") == equal


def test_a_late_attempt_is_still_a_finite_wait_at_the_cap() -> None:
    assert 5.0 <= backoff_s(10_000, base_s=1.0, cap_s=10.0, jitter="equal") <= 10.0
    assert 0 <= backoff_s(10_000, base_s=1.0, cap_s=10.0, jitter="full") <= 10.0
