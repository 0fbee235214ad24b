"""The Redis hashes of ``sluice.ops.metrics.families`` as Prometheus metric families,
read at scrape time (one pipelined ``HGETALL`` per family)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson
import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sluice.ops.metrics.families import FAMILIES, Family, Kind, bound_name
from sluice.producer import keys

Stored = Mapping[bytes, bytes]  # a family's hash: field → value


class SluiceCollector(Collector):
    """Yields every family of the table from Redis, then the ``gauges`` (read elsewhere).
    A Redis error propagates: the scrape fails as a whole rather than show counters that
    went missing (``sluice.gateway.metrics`` answers 503)."""

    def __init__(
        self, client: redis.Redis, gauges: Callable[[], Iterable[Metric]] = lambda: ()
    ) -> None:
        self._client = client
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        pipe = self._client.pipeline(transaction=False)
        for family in FAMILIES:
            pipe.hgetall(keys.metric(family.name))
        stored = dict(zip((family.name for family in FAMILIES), pipe.execute(), strict=True))
        yield from metric_families(stored)
        yield from self._gauges()


def metric_families(stored: Mapping[str, Stored]) -> list[Metric]:
    """Each family of the table from its stored hash (by family name; absent: empty).
    A label-less family with nothing stored shows zeros, so it exists from the start."""
    return [
        _counter(family, stored.get(family.name, {}))
        if family.kind is Kind.COUNTER
        else _histogram(family, stored.get(family.name, {}))
        for family in FAMILIES
    ]


def _fields(family: Family, stored: Stored, extra: int) -> Iterator[tuple[list[str], Any]]:
    """Each field's label values (plus ``extra`` trailing parts), skipping fields of
    another shape (written by a version with other labels)."""
    for field, value in stored.items():
        try:
            parts = orjson.loads(field)
        except orjson.JSONDecodeError:
            continue
        if isinstance(parts, list) and len(parts) == len(family.labels) + extra:
            yield [str(part) for part in parts], value


def _counter(family: Family, stored: Stored) -> Metric:
    metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
    for labels, value in _fields(family, stored, 0):
        metric.add_metric(labels, float(value))
    if not metric.samples and not family.labels:
        metric.add_metric([], 0.0)
    return metric


def _histogram(family: Family, stored: Stored) -> Metric:
    """Buckets are stored one by one (not cumulative), by their upper bound: any bounds
    found are shown, with the table's, cumulated in order."""
    counts: dict[tuple[str, ...], dict[float, int]] = {}
    sums: dict[tuple[str, ...], float] = {}
    for parts, value in _fields(family, stored, 1):
        labels, part = tuple(parts[:-1]), parts[-1]
        if part == "sum":
            sums[labels] = float(value)
            continue
        try:
            bound = float(part)
        except ValueError:
            continue
        series = counts.setdefault(labels, {})
        series[bound] = series.get(bound, 0) + int(value)
    if not counts and not family.labels:
        counts[()] = {}
    metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
    for labels, series in sorted(counts.items()):
        bounds = sorted({*family.buckets_s, *series, math.inf})
        cumulative, buckets = 0, []
        for bound in bounds:
            cumulative += series.get(bound, 0)
            buckets.append((bound_name(bound), float(cumulative)))
        metric.add_metric(list(labels), buckets, sum_value=sums.get(labels, 0.0))
    return metric
