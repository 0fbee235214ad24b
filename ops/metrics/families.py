"""Every metric Sluice keeps, in one table: its name as ``/metrics`` shows it, its type,
its labels and, for a histogram, the upper bounds of its buckets (docs/metrics.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Family:
    """One cluster-wide metric family, stored in the Redis hash ``keys.metric(name)``."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets_s: tuple[float, ...] = ()  # a histogram's upper bounds, +Inf implied
    bucket_names: tuple[str, ...] = field(init=False)  # each bound as the ``le`` label says it

    def __post_init__(self) -> None:
        names = tuple(bound_name(bound) for bound in (*self.buckets_s, math.inf))
        object.__setattr__(self, "bucket_names", names if self.kind is Kind.HISTOGRAM else ())


def bound_name(bound: float) -> str:
    """A bucket's upper bound as Prometheus writes it (``0.5``, ``10.0``, ``+Inf``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


UNKNOWN_SOURCE = "unknown"  # an event that did not validate has no source to trust

EVENTS = Family(
    "sluice_events_total",
    Kind.COUNTER,
    "Events decided by the workers, by outcome status, reason ('' when accepted) and source.",
    ("status", "reason", "source"),
)
TRIGGERS = Family(
    "sluice_triggers_total",
    Kind.COUNTER,
    "Trigger attempts and settlements recorded by the deliverers, by the trigger status "
    "they left (delivered, retrying, failed, cancelled).",
    ("status",),
)
DEAD_LETTERS = Family(
    "sluice_dead_letters_total",
    Kind.COUNTER,
    "Rows written to the dead_letters table (a batch, or an event without ids).",
)
BATCH_SECONDS = Family(
    "sluice_batch_duration_seconds",
    Kind.HISTOGRAM,
    "Time a worker took to decide and commit one ingest batch.",
    buckets_s=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 150.0),
)
DECISION_LATENCY = Family(
    "sluice_decision_latency_seconds",
    Kind.HISTOGRAM,
    "Time from an event's arrival (received_at) to the commit of its outcome.",
    buckets_s=(
        *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        *(30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
    ),
)
HTTP_REQUESTS = Family(
    "sluice_http_requests_total",
    Kind.COUNTER,
    "HTTP requests the gateways answered, by route template, method and status code.",
    ("route", "method", "status"),
)
HTTP_SECONDS = Family(
    "sluice_http_request_duration_seconds",
    Kind.HISTOGRAM,
    "Time the gateways took to answer an HTTP request, by route template and method.",
    ("route", "method"),
    buckets_s=(
        *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        *(0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    ),
)

FAMILIES: tuple[Family, ...] = (
    EVENTS,
    TRIGGERS,
    DEAD_LETTERS,
    BATCH_SECONDS,
    DECISION_LATENCY,
    HTTP_REQUESTS,
    HTTP_SECONDS,
)

# Read at scrape time, kept nowhere (``sluice.ops.metrics.depth``).
QUEUE_DEPTH = "sluice_queue_depth"
TRIGGERS_DUE = "sluice_triggers_due"
