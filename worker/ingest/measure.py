"""What one committed batch adds to the cluster-wide metrics (docs/metrics.md): an event
count by status, reason and source, and the time from each event's arrival to its outcome,
for each decision this delivery made (a redelivery's replayed verdicts were counted the
first time); and the batch's processing time."""

from __future__ import annotations

from collections.abc import Iterable

from sluice.ops.metrics.families import (
    BATCH_SECONDS,
    DECISION_LATENCY,
    EVENTS,
    UNKNOWN_SOURCE,
)
from sluice.ops.metrics.tally import Tally
from sluice.rules import Reason, Status
from sluice.rules.decisions import Decision


def batch_tally(decisions: Iterable[Decision], batch_s: float, decided_at_s: float) -> Tally:
    """The metrics of a batch decided in ``batch_s`` and committed at ``decided_at_s`` (Unix
    time). An event that did not validate has no source or arrival time to trust: it counts
    with source ``unknown`` and no latency. Counted here first, by distinct series, so that
    the tally sees each series once (this runs for every event of the hot path)."""
    counts: dict[tuple[Status, Reason | None, str], int] = {}
    latencies_s: list[float] = []
    for decision in decisions:
        if decision.replayed:
            continue
        verdict, event = decision.verdict, decision.event
        if event is None:
            series = (verdict.status, verdict.reason, UNKNOWN_SOURCE)
        else:
            series = (verdict.status, verdict.reason, event.source)
            latencies_s.append(decided_at_s - event.received_at.timestamp())
        counts[series] = counts.get(series, 0) + 1  # a plain dict: half a Counter's cost
    tally = Tally()
    for (status, reason, source), count in counts.items():
        tally.count(EVENTS, (str(status), str(reason) if reason else "", source), count)
    tally.observe_many(DECISION_LATENCY, (), latencies_s)
    tally.observe(BATCH_SECONDS, (), batch_s)
    return tally
