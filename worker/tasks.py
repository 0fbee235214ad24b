"""The ingest task: decode, call ``ingest``, classify the result (docs/conventions.md #4, #5).

What happens to a batch, whatever goes wrong (``sluice.worker.failures`` classifies):
- a rule rejection is a value (an outcome), never an exception;
- transient failures retry with capped exponential backoff and jitter, as long as they
  last; if even the retry cannot be published, the message is requeued, not dropped;
- a poison message, or an unexpected error, sends the batch to the dead-letter table and
  gives each of its events a ``rejected`` outcome that says so;
- anything that escapes all of this (the dead-letter write failing too) requeues the
  message, and the delivery counter caps how often: a batch that keeps killing its worker
  or keeps failing is dead-lettered after ``max_deliveries`` (docs/reliability.md #2), since
  ``task_reject_on_worker_lost`` alone would loop forever.
Celery acks a task that raises (docs/reliability.md #8), so nothing may escape un-requeued.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any, NoReturn

from celery import Celery, Task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded

from sluice.backoff import backoff_s
from sluice.logs import log_context
from sluice.ops.metrics.families import DEAD_LETTERS
from sluice.ops.metrics.tally import Tally, flush
from sluice.producer import keys
from sluice.producer.envelope import (
    MAX_BATCH_ID_CHARS,
    DecodedBatch,
    Envelope,
    PoisonEnvelopeError,
    decode_envelope,
)
from sluice.producer.events import utc_now
from sluice.producer.journal import forget_on, seen_now
from sluice.producer.pending import clear_on
from sluice.producer.wire import INGEST_TASK, SERIALIZER
from sluice.rules.decisions import Decision
from sluice.store.dead_letters import EVENT
from sluice.wakeups import wake_deliverers
from sluice.worker.failures import is_transient
from sluice.worker.ingest.batch import IngestReport, ingest
from sluice.worker.ingest.measure import batch_tally
from sluice.worker.retries import retry_or_requeue
from sluice.worker.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60
DEFER_SLACK_S = 0.5  # land just after the grace period ends, not just before
DELIVERY_COUNTER_TTL_S = 86_400


def batch_retry_delay_s(retries: int, visibility_timeout_s: int) -> float:
    """The countdown of a batch's retry after ``retries`` retries so far: exponential from
    1 s with full jitter, capped well below the visibility timeout (a countdown longer than
    it would be redelivered while still waiting, docs/reliability.md #4)."""
    cap_s = min(MAX_BACKOFF_S, visibility_timeout_s / 4)
    return backoff_s(retries + 1, base_s=1.0, cap_s=cap_s, jitter="full")


def register_tasks(app: Celery, runtime: Runtime) -> None:
    @app.task(name=INGEST_TASK, bind=True, max_retries=None, serializer=SERIALIZER)
    def ingest_batch(task: Task, envelope: Any) -> None:
        with log_context(batch_id=_batch_id_of(envelope)):  # on every line it logs
            handle_batch(task, runtime, envelope)


def handle_batch(task: Task, runtime: Runtime, envelope: Any) -> None:
    batch_id = _batch_id_of(envelope)
    retries = task.request.retries or 0
    try:
        _process(task, runtime, envelope, batch_id, retries)
    except (Retry, Reject):
        raise
    except Exception as exc:
        if is_transient(exc):
            _retry(task, runtime, exc, batch_id, retries)
        log.exception("batch %s: requeued after a failure it could not record", batch_id)
        _touch(runtime, batch_id)  # it goes to the back of the queue
        raise Reject(exc, requeue=True) from exc


def _process(
    task: Task, runtime: Runtime, envelope: Any, batch_id: str | None, retries: int
) -> None:
    deliveries = _count_delivery(runtime, task.request.id or str(batch_id), batch_id, retries)
    if deliveries > runtime.settings.max_deliveries:
        _give_up(
            runtime, batch_id, envelope, f"delivered {deliveries} times without finishing", None
        )
        return
    started_s = time.perf_counter()
    try:
        report = ingest(envelope, runtime.store, runtime.rules, runtime.rule_policy, utc_now())
    except PoisonEnvelopeError as exc:
        _give_up(runtime, batch_id, envelope, "poison envelope", str(exc))
        return
    except SoftTimeLimitExceeded:
        raise  # requeued and counted: a slow database gets another chance, a stuck batch not
    except Exception as exc:
        if is_transient(exc):
            raise
        log.exception("batch %s failed permanently", batch_id)
        _give_up(
            runtime,
            batch_id,
            envelope,
            f"unexpected error: {type(exc).__name__}",
            traceback.format_exc(),
        )
        return
    for item in report.unkeyed:
        runtime.store.dead_letter(
            batch_id=batch_id,
            reason="invalid event without workspace_id or message_id",
            detail=item.error,
            payload=item.raw,
            now=utc_now(),
            items=[item],
            kind=EVENT,
        )
    if report.triggers:
        wake_deliverers(runtime.redis, report.triggers)  # after the commit
    if report.deferred:
        _defer(runtime, report)
    tally = batch_tally(report.decisions, time.perf_counter() - started_s, time.time())
    if report.unkeyed:  # in the batch's pipeline, not a round trip per dead letter
        tally.count(DEAD_LETTERS, amount=len(report.unkeyed))
    _settled(runtime, report.batch_id, report.decisions, tally)


def _retry(
    task: Task, runtime: Runtime, exc: Exception, batch_id: str | None, retries: int
) -> NoReturn:
    delay = batch_retry_delay_s(retries, runtime.settings.visibility_timeout_s)
    log.warning(
        "batch %s: transient failure, retry %d in %.1fs: %s", batch_id, retries + 1, delay, exc
    )
    _touch(runtime, batch_id)  # the retry is a new message at the back of the queue
    retry_or_requeue(task, exc, delay)


def _give_up(
    runtime: Runtime, batch_id: str | None, envelope: Any, reason: str, detail: str | None
) -> None:
    """Dead-letter the batch, and reject each of its events with a pointer to the dead
    letter (one transaction, ``EventStore.dead_letter``)."""
    log.error("batch %s dead-lettered: %s", batch_id, reason)
    try:
        batch: DecodedBatch | None = decode_envelope(envelope)
    except PoisonEnvelopeError:
        batch = None
    letter = runtime.store.dead_letter(
        batch_id=batch.batch_id if batch is not None else batch_id,
        reason=reason,
        detail=detail,
        payload=envelope,
        now=utc_now(),
        items=batch.items if batch is not None else None,
    )
    _count_dead_letter(runtime)
    if batch is not None:
        _settled(runtime, batch.batch_id, letter.rejected)
    elif batch_id is not None:  # no events to reject, but never publish it again
        _settled(runtime, batch_id, [])


def _defer(runtime: Runtime, report: IngestReport) -> None:
    """Queue the events waiting for their user again, to be decided when their grace
    period ends. The batch id is derived from this one, so a redelivery of this batch
    publishes the same deferred batch and its verdicts replay instead of repeating. It is
    journaled like any batch, its grace period starting when it is due."""
    retry_at = max(d.retry_at for d in report.deferred if d.retry_at is not None)
    deferred_id = deferred_batch_id(report.batch_id)
    waiting = [d.event for d in report.deferred if d.event is not None]
    envelope = Envelope.of(waiting, batch_id=deferred_id)
    delay_s = max((retry_at - utc_now()).total_seconds(), 0.0) + DEFER_SLACK_S
    # Refused, it stays journaled and the sweep publishes it; the batch is retried anyway.
    runtime.publisher.send(envelope.encoded(delay_s=delay_s))
    log.info(
        "batch %s: %d events wait %.1fs for their users",
        report.batch_id,
        len(report.deferred),
        delay_s,
    )


def deferred_batch_id(batch_id: str) -> str:
    """The id of a batch's deferred part: ``<id>.d``, then ``<id>.d2``, ``<id>.d3``… Derived
    from the batch, so a redelivery defers under the same id; bounded, so a batch deferred
    again and again never outgrows the 64 characters a batch id may have."""
    base, marker, count = batch_id.rpartition(".d")
    if marker and (count == "" or count.isdigit()):
        return f"{base}.d{int(count or 1) + 1}"
    return f"{batch_id}.d"


def _batch_id_of(envelope: Any) -> str | None:
    value = envelope.get("batch_id") if isinstance(envelope, dict) else None
    return value[:MAX_BATCH_ID_CHARS] if isinstance(value, str) and value else None


def _count_delivery(runtime: Runtime, message_key: str, batch_id: str | None, retries: int) -> int:
    """Count this delivery of the message; and, in the same round trip, restart the batch's
    grace period in the journal (a worker has it)."""
    key = keys.deliveries(message_key[:MAX_BATCH_ID_CHARS], retries)
    pipe = runtime.redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, DELIVERY_COUNTER_TTL_S)
    if batch_id is not None:
        seen_now(pipe, batch_id)
    count = pipe.execute()[0]
    return int(count)


def _touch(runtime: Runtime, batch_id: str | None) -> None:
    """Restart the batch's grace period in the journal: its message goes back to the end
    of the queue, and the journal sweep's backlog rule reads a batch's place in the queue
    from this time (``sluice.worker.ingest.resend``)."""
    if batch_id is None:
        return
    try:
        runtime.journal.touch([batch_id], time.time())
    except Exception as exc:  # the sweep may copy it; the copy replays
        log.warning("batch %s: could not touch its journal entry: %s", batch_id, exc)


def _settled(
    runtime: Runtime, batch_id: str, decisions: list[Decision], tally: Tally | None = None
) -> None:
    """The batch's outcomes are committed: forget its journal copy and its pending marks,
    and add its ``tally`` to the cluster-wide metrics. If Redis does not answer, the marks
    expire by themselves and the journal sweep publishes the batch again, which replays its
    verdicts (the metrics of this delivery are lost: docs/metrics.md)."""
    try:  # one round trip: the journal, the marks and the metrics live in the same Redis
        pipe = runtime.redis.pipeline(transaction=True)
        forget_on(pipe, [batch_id])
        clear_on(pipe, ((d.workspace_id, d.message_id) for d in decisions))
        if tally is not None:
            tally.write(pipe)
        pipe.execute()
    except Exception as exc:
        log.warning("batch %s: could not forget its journal copy and marks: %s", batch_id, exc)


def _count_dead_letter(runtime: Runtime) -> None:
    """One more dead letter in the cluster-wide metrics (they are rare: a round trip each)."""
    tally = Tally()
    tally.count(DEAD_LETTERS)
    flush(runtime.redis, tally)
