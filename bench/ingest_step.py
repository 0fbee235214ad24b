"""The ingest step alone: ``ingest()`` on queued envelopes, in this process, no Celery.

Isolates what the worker's task body costs from the queue's own cost: CPU per event in
this process and in the PostgreSQL backend serving it, round trips to the database per
batch, and optionally a cProfile of the step (``--profile N`` prints the top N).

    python bench/ingest_step.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
        --redis-url redis://127.0.0.1:6379/13 --batches 40 --mix custom --profile 25

The Redis database given is emptied first. Results: a summary on stderr, JSON on stdout.

``--stale-rows N`` (PostgreSQL) puts N rows of the workspace in each table the step looks
up (outcomes, contacts, order claims, events) after the tables were analysed empty, with
autovacuum off for them: statistics as stale as a server running without autovacuum keeps
them. With ``--baseline-ref REV`` the step runs twice in one go, on a ``git worktree`` of REV
(removed at the end) and on this checkout, each in a fresh database of the server
``--database-url`` names (dropped at the end), and prints both and the ratio:

    python bench/ingest_step.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
        --redis-url redis://127.0.0.1:6379/13 --mix rules --stale-rows 1000000 --baseline-ref main
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import orjson
import redis
from cputime import BackendCpu, is_postgres
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
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
    parser.add_argument("--stale-rows", type=int, default=0, help="rows after the last ANALYZE")
    parser.add_argument("--baseline-ref", help="also time this revision, in the same run")
    args = parser.parse_args()
    if args.baseline_ref:
        compare(args)
        return

    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    # As the worker makes it (no pre-ping); untagged, so its backend is the one measured.
    engine = make_engine(args.database_url, pre_ping=False)
    upgrade(engine)
    workspace = create_workspace(engine, f"step-{int(time.time())}")
    if args.stale_rows:
        seed_stale(engine, workspace.workspace_id, args.stale_rows)
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
        "stale_rows": args.stale_rows,
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


# The workspace's rows in each table the step looks up, inserted after ANALYZE.
STALE_ROWS = (
    "INSERT INTO outcomes (workspace_id, message_id, status, batch_id, decided_at) "
    "SELECT :ws, 'stale-' || i, 'accepted', 'stale-' || (i / 500), now() "
    "FROM generate_series(1, :rows) AS i",
    "INSERT INTO contacts (workspace_id, user_id, email, attributes, attribute_times, "
    "created_at, updated_at) SELECT :ws, 'stale-' || i, 'stale-' || i || '@example.com', "
    "'{}', '{}', now(), now() FROM generate_series(1, :rows) AS i",
    "INSERT INTO order_claims (workspace_id, order_id, message_id, claimed_at) "
    "SELECT :ws, 'stale-' || i, 'stale-' || i, now() FROM generate_series(1, :rows) AS i",
    "INSERT INTO events (workspace_id, message_id, kind, name, traits, properties, context, "
    "timestamp, received_at, source, batch_id, stored_at) SELECT :ws, 'stale-' || i, "
    "'custom', 'Stale', '{}', '{}', '{}', now(), now(), 'client', 'stale-' || (i / 500), "
    "now() FROM generate_series(1, :rows) AS i",
)
LOOKED_UP = ("outcomes", "contacts", "order_claims", "events")


def seed_stale(engine: Engine, workspace_id: str, rows: int) -> None:
    if engine.dialect.name != "postgresql":
        raise SystemExit("--stale-rows needs PostgreSQL")
    with engine.begin() as conn:
        for table in LOOKED_UP:
            conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
            conn.execute(text(f"ANALYZE {table}"))
    started = time.perf_counter()
    with engine.begin() as conn:
        for statement in STALE_ROWS:
            conn.execute(text(statement), {"ws": workspace_id, "rows": rows})
    print(f"{rows} stale rows a table in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def compare(args: argparse.Namespace) -> None:
    """The step on ``--baseline-ref`` and on this checkout, each in a fresh database."""
    here = Path(__file__).resolve()
    repo = here.parent.parent
    scratch = Path(tempfile.mkdtemp(prefix="ingest-step-"))
    worktree = scratch / "baseline"
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", str(worktree), args.baseline_ref],
        check=True,
        capture_output=True,
    )
    server = make_url(args.database_url)
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    results: dict[str, dict[str, Any]] = {}
    try:
        for leg, root in (("before", worktree), ("after", repo)):
            name = f"ingest_step_{leg}_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = server.set(database=name).render_as_string(hide_password=False)
                command = [sys.executable, str(here), "--database-url", url]
                command += ["--redis-url", args.redis_url, "--batches", str(args.batches)]
                command += ["--batch", str(args.batch), "--mix", args.mix]
                command += ["--stale-rows", str(args.stale_rows)]
                env = {**os.environ, "PYTHONPATH": str(root)}
                print(f"{leg} ({root}):", file=sys.stderr)
                done = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE)
                results[leg] = json.loads(done.stdout.decode().splitlines()[-1])
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(worktree)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(scratch, ignore_errors=True)
    before, after = results["before"]["events_per_s"], results["after"]["events_per_s"]
    ratio = round(after / before, 2)
    print(
        f"{args.stale_rows} stale rows: {before} events/s before ({args.baseline_ref}), "
        f"{after} after: x{ratio}",
        file=sys.stderr,
    )
    print(json.dumps({**results, "ratio": ratio}))


if __name__ == "__main__":
    main()
