"""The batch journal: a copy of every queued batch until a worker has committed it.

With Redis as the broker, a message can vanish between the worker's ``BRPOP`` and kombu's
unacked bookkeeping (docs/reliability.md #1). The producer records each envelope here before
it publishes it; the worker forgets it once the batch's outcomes are committed (or the batch
is dead-lettered); a periodic sweep in the worker publishes again the batches nobody has
touched for longer than a grace period (``sluice.worker.ingest.resend``). A batch published
twice is harmless: its second delivery replays the first verdicts.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable

import redis

from sluice.producer import keys
from sluice.producer.errors import PublishError

COMPRESSION_LEVEL = 1  # event JSON shrinks about fivefold at a few µs per event
RETRY_WAITS_S = (0.05, 0.1, 0.25, 0.5, 1.0)  # ride out a Redis restart, as publishing does


class BatchJournal:
    def __init__(self, client: redis.Redis, *, timeout_s: float = 5.0) -> None:
        self._redis = client
        self._timeout_s = timeout_s  # how long ``record`` keeps trying, in all

    def record(self, batch_id: str, wire: bytes, *, not_before: float | None = None) -> None:
        """Keep the envelope ``wire`` of ``batch_id``. ``not_before`` (Unix time, default now)
        is when its grace period starts: a batch held back on purpose starts it later.

        Raises ``PublishError`` when Redis does not take it: a batch that cannot be journaled
        is not published."""
        body = zlib.compress(wire, COMPRESSION_LEVEL)
        deadline = time.monotonic() + self._timeout_s
        for wait_s in (*RETRY_WAITS_S, None):
            try:
                pipe = self._redis.pipeline(transaction=True)
                pipe.hset(keys.journal(), batch_id, body)
                pipe.zadd(keys.journal_seen(), {batch_id: not_before or time.time()})
                pipe.execute()
                return
            except redis.RedisError as exc:
                if (
                    wait_s is None
                    or time.monotonic() + wait_s > deadline
                    or not _is_connection_error(exc)
                ):
                    raise PublishError(f"the queue did not take the events: {exc}") from exc
                time.sleep(wait_s)

    def forget(self, batch_ids: Iterable[str]) -> None:
        """Drop committed batches (one round trip)."""
        pipe = self._redis.pipeline(transaction=True)
        forget_on(pipe, batch_ids)
        pipe.execute()

    def touch(self, batch_ids: Iterable[str], when: float) -> None:
        """Restart the grace period of journaled batches (those not in it stay out)."""
        ids = list(batch_ids)
        if ids:
            self._redis.zadd(keys.journal_seen(), dict.fromkeys(ids, when), xx=True)

    def stale(self, before: float, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` journaled batches last seen before ``before``, oldest first, with
        their envelopes' JSON."""
        found = self._redis.zrangebyscore(
            keys.journal_seen(), "-inf", f"({before}", start=0, num=limit
        )
        ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in found]
        if not ids:
            return []
        bodies = [
            body if isinstance(body, bytes) or body is None else str(body).encode()
            for body in self._redis.hmget(keys.journal(), ids)
        ]
        orphans = [batch_id for batch_id, body in zip(ids, bodies, strict=True) if body is None]
        if orphans:  # forgotten between the two reads
            self._redis.zrem(keys.journal_seen(), *orphans)
        return [
            (batch_id, zlib.decompress(body))
            for batch_id, body in zip(ids, bodies, strict=True)
            if body is not None
        ]

    def elect_sweeper(self, every_s: float) -> bool:
        """True for the one caller per ``every_s`` across the cluster that sweeps the journal."""
        lock = keys.journal_sweep_lock()
        return bool(self._redis.set(lock, "1", nx=True, px=max(1, int(every_s * 1000))))

    def last_seen(self, batch_id: str) -> float | None:
        score = self._redis.zscore(keys.journal_seen(), batch_id)
        return None if score is None else float(score)

    def size(self) -> int:
        return int(self._redis.hlen(keys.journal()))


def forget_on(pipe: redis.client.Pipeline, batch_ids: Iterable[str]) -> None:
    """Queue on ``pipe``: drop these batches from the journal (committed, or given up)."""
    ids = list(batch_ids)
    if ids:
        pipe.hdel(keys.journal(), *ids)
        pipe.zrem(keys.journal_seen(), *ids)


def seen_now(pipe: redis.client.Pipeline, batch_id: str) -> None:
    """Queue on ``pipe``: a worker has taken ``batch_id`` now (restarts its grace period; a
    batch not in the journal stays out of it)."""
    pipe.zadd(keys.journal_seen(), {batch_id: time.time()}, xx=True)


def _is_connection_error(exc: redis.RedisError) -> bool:
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)
