"""Counts gathered in one process and written to Redis in one round trip.

A ``Tally`` costs a dictionary update per count or observation; nothing reaches Redis until
``write`` adds its increments to a pipeline (one ``HINCRBY`` per series and bucket touched,
one ``HINCRBYFLOAT`` per histogram sum), so a batch of 500 events costs a few commands in a
pipeline the worker sends anyway (``sluice.worker.tasks._settled``).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence

import orjson
import redis
from redis.client import Pipeline

from sluice.ops.metrics.families import Family
from sluice.producer import keys

log = logging.getLogger(__name__)

Series = tuple[str, tuple[str, ...]]  # (family name, label values [+ bucket or "sum"])


class Tally:
    """Counter increments and histogram observations, not yet written."""

    __slots__ = ("_counts", "_sums")

    def __init__(self) -> None:
        self._counts: Counter[Series] = Counter()
        self._sums: dict[Series, float] = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def count(self, family: Family, labels: Sequence[str] = (), amount: int = 1) -> None:
        self._counts[(family.name, tuple(labels))] += amount

    def observe(self, family: Family, labels: Sequence[str], value_s: float) -> None:
        """One observation of a histogram (negative values, from clocks apart, count as 0)."""
        value_s = max(value_s, 0.0)
        bucket = family.bucket_names[bisect_left(family.buckets_s, value_s)]
        self._counts[(family.name, (*labels, bucket))] += 1
        total = (family.name, (*labels, "sum"))
        self._sums[total] = self._sums.get(total, 0.0) + value_s

    def observe_many(self, family: Family, labels: Sequence[str], values_s: list[float]) -> None:
        """``observe`` for each value (one dictionary update per bucket, not per value)."""
        if not values_s:
            return
        buckets: Counter[int] = Counter()
        bounds, total = family.buckets_s, 0.0
        for value_s in values_s:
            buckets[bisect_left(bounds, value_s)] += 1  # a negative value: the first bucket
            if value_s > 0:
                total += value_s
        for index, count in buckets.items():
            self._counts[(family.name, (*labels, family.bucket_names[index]))] += count
        series = (family.name, (*labels, "sum"))
        self._sums[series] = self._sums.get(series, 0.0) + total

    def merge(self, other: Tally) -> None:
        """Add another tally's counts to this one (one whose write failed, kept for later)."""
        self._counts.update(other._counts)
        for series, value in other._sums.items():
            self._sums[series] = self._sums.get(series, 0.0) + value

    def write(self, pipe: Pipeline) -> None:
        """Queue the increments on ``pipe`` (the caller executes it)."""
        for (name, fields), amount in self._counts.items():
            pipe.hincrby(keys.metric(name), orjson.dumps(fields), amount)
        for (name, fields), value in self._sums.items():
            pipe.hincrbyfloat(keys.metric(name), orjson.dumps(fields), value)


def flush(client: redis.Redis, tally: Tally) -> bool:
    """Write ``tally`` in one round trip. False, logged, when Redis did not take it."""
    if not tally:
        return True
    try:
        pipe = client.pipeline(transaction=True)  # a scrape sees all of it or none
        tally.write(pipe)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics not written to Redis: %s", exc)
        return False
    return True


def add_counts(client: redis.Redis, family: Family, counts: Mapping[str, int]) -> None:
    """Add ``counts`` (by the value of the family's one label) in one round trip; never
    raises (a failure is logged and the counts are lost)."""
    tally = Tally()
    for value, amount in counts.items():
        tally.count(family, (value,), amount)
    try:
        flush(client, tally)
    except Exception:
        log.exception("metrics not written to Redis")
