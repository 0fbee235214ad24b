"""The periodic retention: each workspace's events older than its retention
(``retention_days``, else ``SLUICE_RETENTION_DAYS``; 0 keeps everything) are purged by one
worker of the cluster at a time, elected per interval by a Redis lock
(``sluice.producer.keys.retention_sweep_lock``), in bounded transactions with pauses
(``sluice.ops.retention``; docs/data-lifecycle.md, "Retention")."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Engine, select

from sluice.ops.retention import PurgeReport, purge_before
from sluice.producer import keys
from sluice.producer.events import utc_now
from sluice.store.engine import make_engine
from sluice.store.schema import workspaces

log = logging.getLogger(__name__)

RETENTION_KEY = "retention_days"  # in a workspace's settings
LOCK_MIN_S = 120  # the lock outlives its holder's next batch by at least this much


def retention_cutoffs(engine: Engine, default_days: int, now: datetime) -> dict[str, datetime]:
    """Each workspace with a retention, and the event time before which its events go."""
    with engine.connect() as conn:
        rows = conn.execute(select(workspaces.c.id, workspaces.c.settings)).all()
    cutoffs = {}
    for row in rows:
        days = retention_days_of(row.settings or {}, default_days)
        if days > 0:
            cutoffs[row.id] = now - timedelta(days=days)
    return cutoffs


def retention_days_of(settings: Mapping[str, Any], default_days: int) -> int:
    """A workspace's own ``retention_days`` when set (0: keep everything), else the default."""
    own = settings.get(RETENTION_KEY)
    return default_days if own is None else int(own)


class SweepLock:
    """The right to apply the retention, one holder across the cluster: ``SET NX PX`` with
    a random token; held for the interval (so one sweep runs per interval), extended while
    a purge runs, and given up early only when the sweep is interrupted."""

    _EXTEND = """
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
    if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
    end
    return 1
    """
    _HOLD_FOR = """
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
    if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
    return redis.call('DEL', KEYS[1])
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._key = keys.retention_sweep_lock()
        self._token = secrets.token_hex(16)
        self._extend = client.register_script(self._EXTEND)
        self._hold_for = client.register_script(self._HOLD_FOR)

    def acquire(self, hold_s: float) -> bool:
        hold_ms = max(1, int(hold_s * 1000))
        return bool(self._redis.set(self._key, self._token, nx=True, px=hold_ms))

    def extend(self, min_s: float = LOCK_MIN_S) -> bool:
        """Keep holding for at least ``min_s`` more; False if the lock is no longer ours."""
        return bool(self._extend(keys=[self._key], args=[self._token, int(min_s * 1000)]))

    def hold_for(self, seconds: float) -> None:
        """If the lock is still ours: keep it exactly ``seconds`` more (0 or less: let go)."""
        self._hold_for(keys=[self._key], args=[self._token, int(seconds * 1000)])

    def release(self) -> None:
        self.hold_for(0)


def sweep_retention(
    engine: Engine,
    lock: SweepLock,
    *,
    default_days: int,
    every_s: float,
    batch_events: int,
    pause_s: float,
    stop: threading.Event,
    now: Callable[[], datetime],
) -> list[PurgeReport] | None:
    """One sweep, unless another worker swept this interval (then None): every workspace
    with a retention, purged in turn. Between transactions it pauses for ``pause_s`` or as
    long as the last one took, whichever is longer, and stops early when ``stop`` is set
    or the lock was lost."""
    if not lock.acquire(every_s):
        return None
    reports = []
    acquired = last_end = time.monotonic()

    def between_batches() -> bool:
        nonlocal last_end
        took_s = time.monotonic() - last_end
        if stop.wait(max(pause_s, min(took_s, 5.0))) or not lock.extend():
            return False
        last_end = time.monotonic()
        return True

    try:
        for workspace_id, before in retention_cutoffs(engine, default_days, now()).items():
            last_end = time.monotonic()
            report = purge_before(
                engine,
                workspace_id,
                before,
                batch_events=batch_events,
                between_batches=between_batches,
            )
            reports.append(report)
            if report.rows:
                log.info(
                    "retention: purged %d rows of workspace %s before %s (%s) at %.0f rows/s",
                    report.rows,
                    workspace_id,
                    before.isoformat(),
                    ", ".join(f"{t} {n}" for t, n in sorted(report.removed.items()) if n),
                    report.rows_per_s,
                )
            if report.stopped:
                lock.release()  # interrupted: another worker may finish the job
                break
    except BaseException:
        lock.release()
        raise
    if not reports or not reports[-1].stopped:  # the interval's sweep is done: no other
        lock.hold_for(acquired + every_s - time.monotonic())  # until the interval ends
    return reports


class RetentionThread:
    """The retention in a thread of a ``sluice worker``: a sweep every ``every_s`` (the
    first after at most a minute), with its own database and Redis connections."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        *,
        default_days: int,
        every_s: float,
        batch_events: int,
        pause_s: float,
    ) -> None:
        self.database_url, self.redis_url = database_url, redis_url
        self.default_days, self.every_s = default_days, every_s
        self.batch_events, self.pause_s = batch_events, pause_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._main, name="sluice-retention", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float) -> None:
        self.stop_event.set()
        self.thread.join(timeout_s)

    def _main(self) -> None:
        engine = make_engine(self.database_url)
        client = redis.Redis.from_url(self.redis_url, socket_timeout=10, socket_connect_timeout=5)
        lock = SweepLock(client)
        wait_s = min(self.every_s, 60.0)
        try:
            while not self.stop_event.wait(wait_s):
                wait_s = self.every_s
                try:
                    sweep_retention(
                        engine,
                        lock,
                        default_days=self.default_days,
                        every_s=self.every_s,
                        batch_events=self.batch_events,
                        pause_s=self.pause_s,
                        stop=self.stop_event,
                        now=utc_now,
                    )
                except Exception:
                    log.exception("the retention sweep failed; it runs again in %.0fs", wait_s)
        finally:
            engine.dispose()
            client.close()
