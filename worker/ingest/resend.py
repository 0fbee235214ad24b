"""The journal sweep: publishes again the batches that were queued and never committed
(docs/reliability.md #1: Redis can lose a message between a worker's ``BRPOP`` and kombu's
bookkeeping). Runs in every worker; a Redis lock elects one sweeper per interval.

A batch is lost when nobody has published or taken it for ``grace_s``, which is longer than
anything a live batch waits for: the visibility timeout (a killed worker's message comes
back after it), a retry's countdown, a task's time limit. A backlog waits longer than that,
so while the ingest queue is not empty only batches older than its oldest message count:
they cannot be waiting in it. A batch published twice replays its first verdicts.
"""

from __future__ import annotations

import logging
import time

import orjson
import redis

from sluice.producer.envelope import EncodedEnvelope
from sluice.producer.publisher import Publisher
from sluice.producer.wire import INGEST_QUEUE

log = logging.getLogger(__name__)

RESEND_LIMIT = 200  # batches per sweep; the rest wait for the next one


def resend_lost_batches(
    publisher: Publisher,
    broker: redis.Redis | None,
    *,
    grace_s: float,
    every_s: float,
) -> list[str]:
    """One sweep, if no other worker swept this interval: the ids of the batches published
    again. ``broker`` is the Redis broker whose queue the backlog rule reads (None when the
    broker is not Redis: producers journal nothing then)."""
    journal = publisher.journal
    if broker is None or journal is None or not journal.elect_sweeper(every_s):
        return []
    now = time.time()
    cutoff = now - grace_s
    oldest = _oldest_queued(broker)
    if oldest is not None:
        seen = journal.last_seen(oldest)
        if seen is not None:
            cutoff = min(cutoff, seen)
    lost = journal.stale(cutoff, RESEND_LIMIT)
    for batch_id, wire in lost:
        publisher.send(EncodedEnvelope(batch_id, wire, journaled=True))
    ids = [batch_id for batch_id, _ in lost]
    if ids:
        journal.touch(ids, now)  # their grace periods start again, in one round trip
        log.warning(
            "published %d batches again that no worker committed within %.0fs "
            "(their messages were lost): %s",
            len(ids),
            grace_s,
            ", ".join(ids[:10]),
        )
    return ids


def _oldest_queued(client: redis.Redis) -> str | None:
    """The batch id of the next message a worker will take from the ingest queue."""
    raw = client.lindex(INGEST_QUEUE, -1)
    if raw is None:
        return None
    try:
        task_id = orjson.loads(raw)["headers"]["id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return task_id if isinstance(task_id, str) else None
