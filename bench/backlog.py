"""Memory with a backlog: queue N events while no worker runs, then start one ``sluice
worker`` and sample the resident memory of its processes (main and pool) while it drains.

    python bench/backlog.py --events 1000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
        --redis-url redis://127.0.0.1:6379/13

Prints the workers' peak and final memory, Redis's memory with the backlog queued (the queue,
the journal, the pending marks) and after the drain, and the drain rate. The Redis database
given is emptied first. Results: a summary on stderr, JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import redis
from cputime import children_of
from throughput import (
    machine,
    persisted,
    services,
    start_sluice_workers,
    stop_workers,
    wait_for_workers,
    workload,
)

from sluice.producer import EventClient, keys
from sluice.producer.wire import INGEST_QUEUE
from sluice.producer.workspace_ids import announce
from sluice.store.engine import make_engine
from sluice.store.workspaces import create_workspace

PAGE_SIZE = 4096


def rss_mb(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * PAGE_SIZE / 2**20


def redis_memory(client: redis.Redis) -> dict[str, float]:
    return {
        "used_mb": round(int(client.info("memory")["used_memory"]) / 2**20, 1),
        "queue_mb": round((client.memory_usage(INGEST_QUEUE) or 0) / 2**20, 1),
        "journal_mb": round((client.memory_usage(keys.journal(), samples=0) or 0) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--redis-url")
    parser.add_argument("--database-url")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    scratch, embedded, redis_url, database_url = services(args.redis_url, args.database_url)
    client = redis.Redis.from_url(redis_url)
    engine = make_engine(database_url)
    workspace_id = create_workspace(engine, "backlog").workspace_id
    announce(client, [workspace_id])  # known on Redis, as `sluice workspace create` does
    events = workload("custom", 100_000)
    started = time.perf_counter()
    with EventClient(workspace_id, broker_url=redis_url, batch_events=args.batch) as sender:
        for start in range(0, args.events, args.batch):
            chunk = [events[(start + i) % len(events)] for i in range(args.batch)]
            sender.send_batch(chunk[: args.events - start])
    queued_s = time.perf_counter() - started
    queued = {"messages": int(client.llen(INGEST_QUEUE)), **redis_memory(client)}
    print(f"queued {args.events:,} events in {queued_s:.0f} s: {queued}", file=sys.stderr)

    (worker,) = start_sluice_workers(1, args.concurrency, redis_url, database_url)
    samples: list[float] = []
    try:
        wait_for_workers(redis_url, 1)
        drain_started = time.perf_counter()
        deadline = drain_started + args.timeout
        while (done := persisted(engine, workspace_id)) < args.events:
            samples.append(rss_mb(worker.pid) + sum(map(rss_mb, children_of(worker.pid))))
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out with {done:,}/{args.events:,} decided")
            time.sleep(1)
        drain_s = time.perf_counter() - drain_started
        final = rss_mb(worker.pid) + sum(map(rss_mb, children_of(worker.pid)))
    finally:
        stop_workers([worker])
    drained = redis_memory(client)
    result = {
        "bench": "backlog",
        "events": args.events,
        "queued": queued,
        "worker_rss_mb": {
            "first": round(samples[0], 1) if samples else None,
            "peak": round(max(samples, default=0.0), 1),
            "final": round(final, 1),
            "processes": 1 + args.concurrency,
            "every_10_s": [round(sample, 1) for sample in samples[::10]],
        },
        "drained_redis": drained,
        "drain_events_per_s": round(args.events / drain_s),
        "machine": machine(),
        "command": " ".join(sys.argv),
    }
    rss = result["worker_rss_mb"]
    print(
        f"worker (main + {args.concurrency} pool) RSS MB: first {rss['first']}, "
        f"peak {rss['peak']}, final {rss['final']} (every 10 s: {rss['every_10_s']}); "
        f"drained at {result['drain_events_per_s']:,} events/s; Redis after: {drained}",
        file=sys.stderr,
    )
    print(json.dumps(result))
    engine.dispose()
    if embedded is not None:
        embedded.stop()
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
