"""Event-loop stalls under one tenant's big batches: four clients post ``--calls``-call
``/v1/batch`` bodies in a loop to a real gateway process for ``--duration-s`` seconds,
while ``/livez`` is sampled every ``--sample-ms`` on a connection of its own. Prints the
``/livez`` latency p50/p99/max and the batch answers, for each version, and the ratio.

The clients run in a child process (four threads, keep-alive, the body encoded once); the
sampler in this one. Before the limits, a batch was validated call by call on the event
loop, and the 1 000-call cap applied after; now it is counted first (413 past the cap),
and a batch over 64 calls is validated on a worker thread.

    python bench/loop_stall.py --redis-url redis://127.0.0.1:6379/2 --baseline-ref 650348e
    python bench/loop_stall.py --redis-url redis://127.0.0.1:6379/2 --calls 1000

``--baseline-ref`` runs the same on that revision first (a ``git worktree``:
``bench/gateway_leg.py``). The Redis database given is emptied before and after each leg
(batches within the cap are queued there; no worker takes them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import redis

sys.path.insert(0, str(Path(__file__).parent))
from gateway_leg import Running, percentile, run_legs, say
from throughput import machine

CLIENTS = 4


def batch_body(calls: int) -> bytes:
    return orjson.dumps(
        {"batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(calls)]}
    )


def load(base_url: str, key: str, calls: int, until: float, answers: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """The child process: ``CLIENTS`` threads posting the batch until ``until`` (wall clock)."""
    body = batch_body(calls)
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=base_url, auth=(key, ""), timeout=60) as http:
            while time.time() < until:
                try:
                    status = str(
                        http.post(
                            "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                        ).status_code
                    )
                except httpx.TransportError:
                    status = "error"
                with lock:
                    counts[status] += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers.put(dict(counts))


def leg(running: Running, args: argparse.Namespace) -> dict[str, object]:
    with httpx.Client(base_url=running.base_url, timeout=30) as http:
        for _ in range(20):
            http.get("/livez")
        until = time.time() + args.duration_s
        spawn = multiprocessing.get_context("spawn")
        answers: multiprocessing.Queue = spawn.Queue()  # type: ignore[type-arg]
        child = spawn.Process(
            target=load, args=(running.base_url, running.write_key, args.calls, until, answers)
        )
        child.start()
        time.sleep(1.0)  # the clients are under way
        latencies: list[float] = []
        while time.time() < until - 0.5:
            started = time.perf_counter()
            http.get("/livez").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(args.sample_ms / 1000)
        statuses = answers.get(timeout=120)
        child.join(timeout=60)
    redis.Redis.from_url(args.redis_url).flushdb()
    result = {
        "code": running.code.label,
        "revision": running.code.revision,
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "batches": statuses,
    }
    say(f"{running.code.label}: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True, help="a Redis database to empty and use")
    parser.add_argument("--baseline-ref", help="also run this revision, first")
    parser.add_argument("--calls", type=int, default=10_000, help="calls per batch")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--sample-ms", type=float, default=20.0)
    args = parser.parse_args()
    results = run_legs(
        args.baseline_ref, args.redis_url, "loop-stall-", lambda running: leg(running, args)
    )
    print(f"machine: {machine()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{CLIENTS} clients posting {args.calls}-call batches for {args.duration_s:g} s")
    print("| code | /livez p50 ms | p99 ms | max ms | samples | batch answers |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['code']} ({r['revision']}) | {r['p50_ms']} | **{r['p99_ms']}** | "
            f"{r['max_ms']} | {r['samples']} | {r['batches']} |"
        )
    if len(results) == 2:
        old, new = (float(r["p99_ms"]) for r in results)  # type: ignore[arg-type]
        print(f"p99 after / before: {new / old:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
