"""Memory under unknown write keys: a real gateway process gets ``--requests`` requests,
each with a different junk key of ``--key-bytes`` bytes, and its resident set size (RSS) is
read before and after. Half go to ``POST /compat/bunce/v1/events/trigger`` (the key in
``X-Authorization``), half to ``POST /v1/track`` (the key as the HTTP Basic user), from
``--concurrency`` connections.

Before the limits, each key was looked up and remembered as a miss (the raw key, up to
10 000 of them) and the server took a head of any size; now a head over
``SLUICE_MAX_HEADER_BYTES`` gets 431, a key over ``MAX_WRITE_KEY_CHARS`` is refused without
a lookup, and the cache holds digests, misses bounded apart (``gateway/cache.py``).

    python bench/junk_keys.py --redis-url redis://127.0.0.1:6379/2 --baseline-ref 650348e
    python bench/junk_keys.py --redis-url redis://127.0.0.1:6379/2 --key-bytes 4096

``--baseline-ref`` runs the same on that revision first (a ``git worktree``:
``bench/gateway_leg.py``). The Redis database given is emptied before each leg. Answers are
counted by status; ``closed`` is a connection the gateway closed before its answer could be
read (it refuses a huge head while the client is still sending it).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from gateway_leg import Running, rss_mb, run_legs, say
from throughput import machine

SETTLE_S = 2.0


def junk_key(n: int, size: int) -> str:
    """A key no workspace has, ``size`` characters, different for every ``n``."""
    head = f"sk_junk_{n:08d}_"
    return head + os.urandom(size).hex()[: size - len(head)]


def send(client: httpx.Client, n: int, size: int) -> str:
    key = junk_key(n, size)
    try:
        if n % 2:
            answer = client.post(
                "/compat/bunce/v1/events/trigger",
                headers={"X-Authorization": key},
                json={"event_id": "00000000-0000-0000-0000-000000000000", "payload": {}},
            )
        else:
            basic = base64.b64encode(f"{key}:".encode()).decode()
            answer = client.post(
                "/v1/track",
                headers={"Authorization": f"Basic {basic}"},
                json={"userId": "u", "event": "E"},
            )
    except httpx.TransportError:
        return "closed"
    return str(answer.status_code)


def leg(running: Running, args: argparse.Namespace) -> dict[str, object]:
    with httpx.Client(base_url=running.base_url, timeout=30) as warm:
        for i in range(20):  # the app's first requests: imports, pools, caches
            warm.post(
                "/v1/track", auth=(running.write_key, ""), json={"userId": f"w{i}", "event": "E"}
            )
    time.sleep(SETTLE_S)
    before = rss_mb(running.pid)
    statuses: Counter[str] = Counter()
    started = time.perf_counter()

    def one(n: int) -> str:
        with httpx.Client(base_url=running.base_url, timeout=30) as client:
            return send(client, n, args.key_bytes)

    with ThreadPoolExecutor(args.concurrency) as pool:
        statuses.update(pool.map(one, range(args.requests)))
    elapsed = time.perf_counter() - started
    gc.collect()
    time.sleep(SETTLE_S)
    after = rss_mb(running.pid)
    say(f"{running.code.label}: {dict(statuses)} in {elapsed:.1f} s")
    return {
        "code": running.code.label,
        "revision": running.code.revision,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "growth_mb": round(after - before, 1),
        "statuses": dict(statuses),
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True, help="a Redis database to empty and use")
    parser.add_argument("--baseline-ref", help="also run this revision, first")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--key-bytes", type=int, default=256 * 1024)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results = run_legs(
        args.baseline_ref, args.redis_url, "junk-keys-", lambda running: leg(running, args)
    )
    print(f"machine: {machine()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{args.requests} requests, each with its own {args.key_bytes}-byte junk key")
    print("| code | RSS before MB | RSS after MB | growth MB | answers |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['code']} ({r['revision']}) | {r['rss_before_mb']} | {r['rss_after_mb']} "
            f"| **{r['growth_mb']}** | {r['statuses']} |"
        )
    if len(results) == 2:
        old, new = (float(r["growth_mb"]) for r in results)  # type: ignore[arg-type]
        print(f"growth after / before: {new / old:.3f}" if old > 0 else "no growth before")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
