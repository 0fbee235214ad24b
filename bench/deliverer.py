"""The deliverer alone: how fast ``sluice deliverer`` drains triggers that are already in
the database, what CPU a trigger costs it and PostgreSQL, and the floor under it: the same
number of POSTs from one bare ``aiohttp`` session, measured in the same run.

1. ``--triggers`` "Signed Up" events go in through ``EventClient`` and a worker that does
   not deliver (``sluice worker --no-deliver``), each firing one webhook automation; the
   worker stops once every trigger is committed.
2. A receiver answers 204 at once, in a process of its own (asyncio, HTTP/1.1 keep-alive).
3. ``--deliverers`` ``sluice deliverer`` processes start; the clock runs until every
   trigger's webhook has arrived. CPU is read from ``/proc`` for the deliverers and for the
   PostgreSQL backends serving them (``bench/cputime.py``).
4. The floor: one process POSTs as many signed-sized bodies to the same receiver through one
   ``aiohttp`` session, ``SLUICE_WEBHOOK_MAX_IN_FLIGHT`` (64) at a time, and reports its
   requests/s and CPU per request.

    python bench/deliverer.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_deliverer \\
        --redis-url redis://127.0.0.1:6379/13 --triggers 20000 [--deliverers 2]

The database named is dropped and created again (through the server's ``postgres``
database) and dropped at the end; the Redis database is emptied. Results: a summary and
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psycopg
import redis
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
from cputime import measure
from throughput import machine

from sluice.actions import Action
from sluice.producer import EventClient
from sluice.producer.workspace_ids import announce
from sluice.store.automations import add_automation
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.schema import trigger_deliveries
from sluice.store.workspaces import create_workspace

IN_FLIGHT = 64
BODY = b'{"type":"event.triggered","data":{"event":{"properties":{"plan":"pro"}}}}' + b" " * 500

RECEIVER = r"""
import asyncio, os, sys
seen = set()
class Answer(asyncio.Protocol):
    def connection_made(self, transport): self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length: ")
            length = int(head[at + 16:head.find(b"\r\n", at)]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length: return
            at = head.find(b"webhook-id: ")
            seen.add(head[at + 12:head.find(b"\r\n", at)])
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    while True:
        await asyncio.sleep(0.05)
        with open(sys.argv[1] + ".tmp", "w") as out: out.write(str(len(seen)))
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
asyncio.run(main())
"""


def fresh_database(database_url: str) -> None:
    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{url.database}"')


def drop_database(database_url: str) -> None:
    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def committed_triggers(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(trigger_deliveries)).scalar_one())


def received(state: Path) -> int:
    try:
        return int(state.read_text() or 0)
    except (OSError, ValueError):
        return 0


def sluice(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "--log-level=WARNING", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def fill(
    engine: Engine, env: dict[str, str], workspace_id: str, redis_url: str, count: int
) -> None:
    worker = sluice(env, "worker", "--no-deliver", "--concurrency=2", "--loglevel=WARNING")
    try:
        with EventClient(workspace_id, broker_url=redis_url) as client:
            for start in range(0, count, 500):
                client.send_batch(
                    [
                        {
                            "kind": "custom",
                            "name": "Signed Up",
                            "user_id": f"u{i}",
                            "properties": {"n": i},
                        }
                        for i in range(start, min(count, start + 500))
                    ]
                )
        while committed_triggers(engine) < count:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(60)


async def bare_posts(url: str, count: int) -> tuple[float, float]:
    """Seconds and CPU seconds for ``count`` POSTs, ``IN_FLIGHT`` at a time."""
    slots = asyncio.Semaphore(IN_FLIGHT)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def post(index: int) -> None:
            headers = {"webhook-id": f"floor_{index}", "content-type": "application/json"}
            async with slots, session.post(url, data=BODY, headers=headers) as answer:
                await answer.read()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(post(i) for i in range(count)))
        return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="PostgreSQL; dropped and recreated")
    parser.add_argument("--redis-url", required=True, help="emptied first")
    parser.add_argument("--triggers", type=int, default=20_000)
    parser.add_argument("--deliverers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    fresh_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    engine = make_engine(args.database_url)
    receiver: subprocess.Popen[bytes] | None = None
    deliverers: list[subprocess.Popen[bytes]] = []
    state = Path(f"/tmp/sluice-bench-deliverer-{os.getpid()}")
    try:
        upgrade(engine)
        workspace = create_workspace(engine, "bench-deliverer")
        with redis.Redis.from_url(args.redis_url) as known:  # as `sluice workspace create` does
            announce(known, [workspace.workspace_id])
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(state)], stdout=subprocess.PIPE
        )
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{int(receiver.stdout.readline())}/hook"
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
            "SLUICE_REDIS_URL": args.redis_url,
            "SLUICE_BROKER_URL": args.redis_url,
            "SLUICE_DATABASE_URL": args.database_url,
            "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "true",
            "SLUICE_WEBHOOK_MAX_IN_FLIGHT": str(IN_FLIGHT),
        }
        fill(engine, env, workspace.workspace_id, args.redis_url, args.triggers)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        deliverers = [sluice(env, "deliverer") for _ in range(args.deliverers)]
        started = time.perf_counter()
        with measure([d.pid for d in deliverers], args.database_url) as cpu:
            deadline = time.monotonic() + args.timeout
            while received(state) < args.triggers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out at {received(state)}/{args.triggers}")
                time.sleep(0.02)
        seconds = time.perf_counter() - started
        floor_s, floor_cpu_s = asyncio.run(bare_posts(url, args.triggers))
    finally:
        for process in [*deliverers, *([receiver] if receiver else [])]:
            process.terminate()
            process.wait(30)
        engine.dispose()
        drop_database(args.database_url)
        state.unlink(missing_ok=True)

    per_trigger = cpu.per_event_us(args.triggers)
    result = {
        "bench": "deliverer_drain",
        "triggers": args.triggers,
        "deliverers": args.deliverers,
        "triggers_per_s": round(args.triggers / seconds),
        "cpu_us_per_trigger": {
            "deliverers": per_trigger["workers"],
            "postgres": per_trigger["postgres"],
        },
        "bare_aiohttp": {
            "requests_per_s": round(args.triggers / floor_s),
            "cpu_us_per_request": round(floor_cpu_s * 1e6 / args.triggers, 1),
        },
        "machine": machine(),
        "command": " ".join(sys.argv),
    }
    print(
        f"{args.deliverers} deliverer(s): {result['triggers_per_s']} triggers/s; CPU per trigger: "
        f"deliverers {per_trigger['workers']} µs, PostgreSQL {per_trigger['postgres']} µs\n"
        f"bare aiohttp, one process: {result['bare_aiohttp']['requests_per_s']} requests/s, "
        f"{result['bare_aiohttp']['cpu_us_per_request']} µs CPU per request"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
