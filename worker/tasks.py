"""The ingest task: decode, call ``ingest``, classify the result (STYLE 4, 5).

Errors are classified once, here:
- a rule rejection is a value (an outcome), never an exception;
- transient failures (database or Redis unreachable, SQLite busy) retry with capped
  exponential backoff and jitter, for as long as they last: nothing is dropped;
- everything else is permanent: the batch goes to the dead-letter table with the reason.
A batch that keeps killing its worker is dead-lettered by the delivery counter
(RELIABILITY #2), since ``task_reject_on_worker_lost`` alone would loop forever.
"""

from __future__ import annotations

import logging
import random
import traceback
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from producer.envelope import Envelope, PoisonEnvelopeError
from producer.events import utc_now
from producer.wire import INGEST_QUEUE, INGEST_TASK
from rules import keys
from worker.ingest import IngestReport, ingest
from worker.runtime import Runtime

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    SoftTimeLimitExceeded,  # a stuck lock or a slow database: try the batch again
)
MAX_BACKOFF_S = 60
DEFER_SLACK_S = 0.5  # land just after the grace period ends, not just before
DELIVERY_COUNTER_TTL_S = 86_400


def retry_delay_s(retries: int, visibility_timeout_s: int) -> float:
    """Exponential backoff with full jitter, capped well below the visibility timeout
    (a countdown longer than it would be redelivered while still waiting, RELIABILITY #4)."""
    cap = min(MAX_BACKOFF_S, visibility_timeout_s / 4)
    return random.uniform(0, min(cap, 2.0**retries))


def register_tasks(app: Celery, runtime: Runtime) -> None:
    @app.task(name=INGEST_TASK, bind=True, max_retries=None)
    def ingest_batch(task: Task, envelope: Any) -> None:
        handle_batch(task, runtime, envelope)


def handle_batch(task: Task, runtime: Runtime, envelope: Any) -> None:
    batch_id = envelope.get("batch_id") if isinstance(envelope, dict) else None
    retries = task.request.retries or 0
    try:
        _process(task, runtime, envelope, batch_id, retries)
    except TRANSIENT_ERRORS as exc:
        delay = retry_delay_s(retries, runtime.settings.visibility_timeout_s)
        log.warning(
            "batch %s: transient failure, retry %d in %.1fs: %s", batch_id, retries + 1, delay, exc
        )
        raise task.retry(exc=exc, countdown=delay) from exc


def _process(
    task: Task, runtime: Runtime, envelope: Any, batch_id: str | None, retries: int
) -> None:
    deliveries = _count_delivery(runtime, task.request.id or str(batch_id), retries)
    if deliveries > runtime.settings.max_deliveries:
        _dead_letter(
            runtime, batch_id, f"delivered {deliveries} times without finishing", None, envelope
        )
        return
    try:
        report = ingest(envelope, runtime.store, runtime.engine, runtime.rule_policy, utc_now())
    except TRANSIENT_ERRORS:
        raise
    except PoisonEnvelopeError as exc:
        _dead_letter(runtime, batch_id, "poison envelope", str(exc), envelope)
        return
    except Exception as exc:
        log.exception("batch %s failed permanently", batch_id)
        _dead_letter(
            runtime,
            batch_id,
            f"unexpected error: {type(exc).__name__}",
            traceback.format_exc(),
            envelope,
        )
        return
    for item in report.unkeyed:
        _dead_letter(
            runtime,
            batch_id,
            "invalid event without workspace_id or message_id",
            item.error,
            item.raw,
        )
    if report.deferred:
        _defer(task, report)
    _clear_marks(runtime, report.decisions)


def _defer(task: Task, report: IngestReport) -> None:
    """Queue the events waiting for their user again, to be decided when their grace
    period ends. The batch id is derived from this one, so a redelivery of this batch
    publishes the same deferred batch and its verdicts replay instead of repeating."""
    retry_at = max(d.retry_at for d in report.deferred if d.retry_at is not None)
    envelope = Envelope(batch_id=f"{report.batch_id}.d", events=[d.event for d in report.deferred])
    delay_s = max((retry_at - utc_now()).total_seconds(), 0.0) + DEFER_SLACK_S
    task.app.send_task(
        INGEST_TASK,
        args=[envelope.to_wire()],
        task_id=envelope.batch_id,
        queue=INGEST_QUEUE,
        countdown=delay_s,
    )
    log.info(
        "batch %s: %d events wait %.1fs for their users",
        report.batch_id,
        len(report.deferred),
        delay_s,
    )


def _count_delivery(runtime: Runtime, message_key: str, retries: int) -> int:
    key = keys.deliveries(message_key, retries)
    pipe = runtime.redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, DELIVERY_COUNTER_TTL_S)
    count, _ = pipe.execute()
    return int(count)


def _clear_marks(runtime: Runtime, decisions: Any) -> None:
    try:
        runtime.marks.clear((d.workspace_id, d.message_id) for d in decisions)
    except redis.exceptions.RedisError as exc:  # the marks expire by themselves
        log.warning("could not clear pending marks: %s", exc)


def _dead_letter(
    runtime: Runtime, batch_id: str | None, reason: str, detail: str | None, payload: Any
) -> None:
    log.error("batch %s dead-lettered: %s", batch_id, reason)
    runtime.store.dead_letter(
        batch_id=batch_id, reason=reason, detail=detail, payload=payload, now=utc_now()
    )
