"""The ingest step alone: ``ingest()`` on queued envelopes, in this process, no Celery.

Isolates what the worker's task body costs from the queue's own cost: CPU per event in
this process and in the PostgreSQL backend serving it, round trips to the database per
batch, and optionally a cProfile of the step (``--profile N`` prints the top N).

    python bench/ingest_step.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
        --redis-url redis://127.0.0.1:6379/13 --batches 40 --mix custom --profile 25

The Redis database given is emptied first. Results: a summary on stderr, JSON on stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from contextlib import nullcontext
from typing import Any

import orjson
import redis
from cputime import BackendCpu, is_postgres
from sqlalchemy import event
from throughput import workload

from sluice.producer.envelope import Envelope
from sluice.producer.events import Event, utc_now
from sluice.rules.backends.redis import RedisClaimStore
from sluice.rules.bots import BotDetector
from sluice.rules.engine import RulePolicy, RulesEngine
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.workspaces import create_workspace
from sluice.worker.ingest.batch import ingest
from sluice.worker.ingest.store import EventStore


def envelopes(workspace_id: str, mix: str, batches: int, size: int) -> list[Any]:
    """What a worker receives: each envelope as the queue serializer decodes it."""
    received = utc_now()
    made = workload(mix, batches * size)
    payloads = []
    for start in range(0, len(made), size):
        chunk = [
            Event.model_validate(
                {
                    "source": "client",
                    "received_at": received,
                    **fields,
                    "workspace_id": workspace_id,
                }
            )
            for fields in made[start : start + size]
        ]
        payloads.append(orjson.loads(Envelope(events=chunk).wire))
    return payloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="sqlite:///ingest-step.db")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--mix", choices=("custom", "rules"), default="custom")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    args = parser.parse_args()

    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    # As the worker makes it (no pre-ping); untagged, so its backend is the one measured.
    engine = make_engine(args.database_url, pre_ping=False)
    upgrade(engine)
    workspace = create_workspace(engine, f"step-{int(time.time())}")
    payloads = envelopes(workspace.workspace_id, args.mix, args.batches, args.batch)
    store = EventStore(engine)
    rules = RulesEngine(RedisClaimStore(client, retention_s=86_400), BotDetector([]))
    policy = RulePolicy()
    ingest(payloads[0], store, rules, policy, utc_now())  # warm caches and connections

    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine, "before_cursor_execute", count)
    profiler = cProfile.Profile() if args.profile else None
    backend = BackendCpu(args.database_url) if is_postgres(args.database_url) else None
    events = (len(payloads) - 1) * args.batch
    with backend or nullcontext():
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for payload in payloads[1:]:
            ingest(payload, store, rules, policy, utc_now())
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result = {
        "mix": args.mix,
        "events": events,
        "events_per_s": round(events / wall),
        "python_us_per_event": round(cpu * 1e6 / events, 1),
        "postgres_us_per_event": (
            round(backend.seconds * 1e6 / events, 1) if backend and backend.seconds else None
        ),
        "statements_per_batch": round(statements / (len(payloads) - 1), 1),
    }
    print(
        f"{events} events: {result['events_per_s']} events/s in one process; "
        f"CPU µs/event: Python {result['python_us_per_event']}, "
        f"PostgreSQL {result['postgres_us_per_event']}; "
        f"{result['statements_per_batch']} statements a batch",
        file=sys.stderr,
    )
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
