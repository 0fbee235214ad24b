"""Purging beside ingestion: seed N old events (with outcomes, triggers and an attempt each)
in one workspace, start a real ``sluice worker``, keep a steady ingestion load on another
workspace through ``EventClient``, and run the real ``sluice purge`` meanwhile.

    python bench/purge.py --events 200000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_purge \\
        --redis-url redis://127.0.0.1:6379/5

The PostgreSQL database named is created for the run and dropped afterwards (``--keep``
keeps it); without ``--database-url`` a SQLite file in a scratch directory. The Redis
database given is emptied first.

Ingestion is measured in three windows of the same run: before the purge (``--window-s``),
during it, and after it (``--window-s``): events decided per second in the ingesting
workspace, and the deepest ingest queue seen. The load keeps the queue fed (``--rate 0``:
as much as the worker takes) or sends ``--rate`` events/s. The purge's own figures (rows/s,
transactions, the longest one) come from its ``--json`` report. Seeding goes through the
worker's store (``EventStore.record_batch``, many rows a statement), untimed.

Results: a summary on stderr, JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from throughput import machine, start_sluice_workers, stop_workers, wait_for_workers

from sluice.actions import Action
from sluice.producer import EventClient
from sluice.producer.events import Event, EventKind
from sluice.producer.wire import INGEST_QUEUE
from sluice.producer.workspace_ids import announce
from sluice.rules import Verdict
from sluice.rules.decisions import Decision
from sluice.store.automations import add_automation, disable_automation
from sluice.store.engine import make_engine, writing
from sluice.store.migrate import upgrade
from sluice.store.schema import events, outcomes, trigger_deliveries
from sluice.store.workspaces import create_workspace
from sluice.worker.ingest.store import EventStore

SEED_BATCH = 5_000
LOAD_BATCH = 500
QUEUED_BATCHES = 20  # --rate 0: the load keeps about this many batches queued
SLUICE = str(Path(sys.executable).with_name("sluice"))


def seed(engine: Engine, workspace_id: str, count: int) -> None:
    """``count`` events 300 to 400 days old, accepted, each with a delivered trigger and one
    attempt."""
    automation = add_automation(
        engine,
        workspace_id,
        "Viewed",
        Action.WEBHOOK,
        target="http://127.0.0.1:9/hook",
        allow_private_webhooks=True,
    )
    store = EventStore(engine, trigger_max_age_s=10 * 365 * 86_400)
    start = datetime.now(UTC) - timedelta(days=400)
    step_s = 100 * 86_400 / max(count, 1)
    for first in range(0, count, SEED_BATCH):
        decisions = []
        for i in range(first, min(first + SEED_BATCH, count)):
            event = Event(
                workspace_id=workspace_id,
                kind=EventKind.CUSTOM,
                name="Viewed",
                user_id=f"user-{i % 5000}",
                properties={"page": f"/p/{i % 300}", "i": i},
                timestamp=start + timedelta(seconds=i * step_s),
            )
            decisions.append(Decision(workspace_id, event.message_id, Verdict.accept(), event))
        store.record_batch(f"seed-{first}", decisions, start)
    with writing(engine) as conn:
        conn.execute(
            update(trigger_deliveries)
            .where(trigger_deliveries.c.workspace_id == workspace_id)
            .values(status="delivered", delivered_at=start, next_attempt_at=None, attempts=1)
        )
        conn.execute(
            text(
                "INSERT INTO delivery_attempts "
                "(trigger_id, attempt, started_at, latency_ms, status_code, result) "
                "SELECT id, 1, created_at, 12, 200, 'delivered' FROM trigger_deliveries "
                "WHERE workspace_id = :ws"
            ),
            {"ws": workspace_id},
        )
        disable_automation(conn, automation.id, "seeded", start)


@dataclass
class Load:
    """A steady stream of new events into one workspace, from a thread."""

    redis_url: str
    workspace_id: str
    rate: int  # events/s; 0: keep the queue fed
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    deepest: int = 0

    def run(self) -> None:
        queue = redis.Redis.from_url(self.redis_url)
        started = time.monotonic()
        with EventClient(self.workspace_id, broker_url=self.redis_url) as client:
            while not self.stop.is_set():
                depth = int(queue.llen(INGEST_QUEUE))
                self.deepest = max(self.deepest, depth)
                if self.rate == 0 and depth >= QUEUED_BATCHES:
                    time.sleep(0.01)
                    continue
                if self.rate and self.sent >= self.rate * (time.monotonic() - started):
                    time.sleep(0.005)
                    continue
                client.send_batch(
                    {
                        "kind": "custom",
                        "name": "Clicked",
                        "user_id": f"live-{(self.sent + i) % 5000}",
                    }
                    for i in range(LOAD_BATCH)
                )
                self.sent += LOAD_BATCH


def decided(engine: Engine, workspace_id: str) -> int:
    query = (
        select(func.count()).select_from(outcomes).where(outcomes.c.workspace_id == workspace_id)
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


@dataclass
class Sampler:
    """The ingesting workspace's decided events, counted every ``every_s`` from a thread."""

    engine: Engine
    workspace_id: str
    every_s: float = 0.25
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            self.samples.append((time.monotonic(), decided(self.engine, self.workspace_id)))

    def rate(self, start: float, end: float) -> tuple[int, float]:
        """Events decided between the samples nearest ``start`` and ``end``; their span."""
        first = min(self.samples, key=lambda sample: abs(sample[0] - start))
        last = min(self.samples, key=lambda sample: abs(sample[0] - end))
        return last[1] - first[1], last[0] - first[0]


def window(sampler: Sampler, start: float, end: float) -> dict[str, Any]:
    count, span_s = sampler.rate(start, end)
    return {
        "seconds": round(span_s, 1),
        "events_decided": count,
        "events_per_s": round(count / span_s) if span_s > 0 else 0,
    }


def measure(database_url: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    redis.Redis.from_url(redis_url).flushdb()
    engine = make_engine(database_url)
    upgrade(engine)
    old_ws = create_workspace(engine, "old").workspace_id
    live_ws = create_workspace(engine, "live").workspace_id
    with redis.Redis.from_url(
        redis_url
    ) as known:  # known on Redis, as `sluice workspace create` does
        announce(known, [old_ws, live_ws])
    started = time.perf_counter()
    seed(engine, old_ws, args.events)
    print(
        f"seeded {args.events:,} old events in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )

    env = {**os.environ, "SLUICE_DATABASE_URL": database_url, "SLUICE_REDIS_URL": redis_url}
    (worker,) = start_sluice_workers(1, args.concurrency, redis_url, database_url)
    load = Load(redis_url, live_ws, args.rate)
    sender = threading.Thread(target=load.run, daemon=True)
    try:
        wait_for_workers(redis_url, 1)
        sender.start()
        time.sleep(args.warmup_s)

        purge_options = ["--batch", str(args.batch), "--pause-ms", str(args.pause_ms)]
        sampler = Sampler(engine, live_ws)
        sampling = threading.Thread(target=sampler.run, daemon=True)
        sampling.start()
        load.deepest = 0
        baseline_start = time.monotonic()
        time.sleep(args.window_s)
        deepest_before, load.deepest = load.deepest, 0
        before = (datetime.now(UTC) - timedelta(days=200)).isoformat()
        done = subprocess.run(
            [SLUICE, "purge", old_ws, "--before", before, "--json", *purge_options],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        purge_end = time.monotonic()  # the command prints its report and exits at once
        report = json.loads(done.stdout)
        deepest_during, load.deepest = load.deepest, 0
        time.sleep(args.window_s)
        deepest_after = load.deepest
        sampler.stop.set()
        sampling.join(10)
        baseline = window(sampler, baseline_start, baseline_start + args.window_s)
        during = window(sampler, purge_end - report["elapsed_s"], purge_end)
        after = window(sampler, purge_end, purge_end + args.window_s)
        baseline["deepest_queue_batches"] = deepest_before
        during["deepest_queue_batches"] = deepest_during
        after["deepest_queue_batches"] = deepest_after
    finally:
        load.stop.set()
        sender.join(30)
        stop_workers([worker])
    with engine.connect() as conn:
        left = conn.execute(
            select(func.count()).select_from(events).where(events.c.workspace_id == old_ws)
        ).scalar_one()
    engine.dispose()
    return {
        "database": make_url(database_url).get_backend_name(),
        "old_events": args.events,
        "old_events_left": left,
        "purge": report,
        "ingestion": {"before": baseline, "during_purge": during, "after": after},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="old events seeded")
    parser.add_argument("--database-url", help="a PostgreSQL database to create and drop")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--rate", type=int, default=0, help="events/s; 0: keep the queue fed")
    parser.add_argument("--batch", type=int, default=2_000, help="events per purge transaction")
    parser.add_argument("--pause-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    args = parser.parse_args()

    if args.database_url:
        url = make_url(args.database_url)
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        try:
            result = measure(url.render_as_string(hide_password=False), args.redis_url, args)
        finally:
            if not args.keep:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            admin.dispose()
    else:
        with tempfile.TemporaryDirectory(prefix="sluice-purge-") as scratch:
            result = measure(f"sqlite:///{Path(scratch) / 'purge.db'}", args.redis_url, args)
    result |= {"machine": machine(), "command": " ".join(sys.argv)}
    purge, ingestion = result["purge"], result["ingestion"]
    print(
        f"{result['database']}: purged {purge['rows']:,} rows ({purge['removed']}) in "
        f"{purge['elapsed_s']} s = {purge['rows_per_s']:,.0f} rows/s, "
        f"{purge['transactions']} transactions, the longest {purge['longest_transaction_ms']} ms; "
        f"{result['old_events_left']} old events left\n"
        f"ingestion events/s: before {ingestion['before']['events_per_s']:,}, "
        f"during the purge {ingestion['during_purge']['events_per_s']:,}, "
        f"after {ingestion['after']['events_per_s']:,} (deepest queue, batches: "
        f"{ingestion['before']['deepest_queue_batches']}, "
        f"{ingestion['during_purge']['deepest_queue_batches']}, "
        f"{ingestion['after']['deepest_queue_batches']})",
        file=sys.stderr,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
