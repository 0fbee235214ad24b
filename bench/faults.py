"""Faults under load: nothing acknowledged is lost, nothing is stored twice, no order is
accepted twice and every accepted event an automation matches gets its webhook, while workers
and the deliverer are killed, Redis restarts and PostgreSQL goes away.

Starts services of its own and never touches shared ones: a PostgreSQL 15 cluster
(``pg_createcluster`` on a free port from 5499, trust on loopback, dropped at the end; needs
root and postgresql-common), a Redis server with AOF (``appendfsync everysec``) in a scratch
directory on a free port, then ``sluice migrate``, two ``sluice worker --queues sluice.ingest
--concurrency 2`` processes, a deliverer (``DELIVERER_ARGS``) and a ``sluice gateway``. Two
producers run side by side for ``--seconds``: ``EventClient.send_batch`` and HTTP ``POST
/v1/batch``, page views, "Order Completed" confirmations whose order ids repeat on purpose,
and a share (``--probe-share``) of custom "Fault Probe" events. A failed send (503, 429,
``PublishError``) is retried with the same message ids; only acknowledged ids count.

A webhook automation on "Fault Probe" posts to an HTTP/1.1 keep-alive receiver in this
process, which answers 204 and records each request's ``webhook-id`` and the event's message
id. Before the load, a warm-up event in a workspace of its own goes through the whole chain
(ingest worker, deliverer, receiver): the deliverer is ready when its webhook has arrived.

Meanwhile, on a fixed plan: a worker's main process and its pool are killed with SIGKILL
(as ``docker kill`` would) ``--kills`` times, the deliverer ``--deliverer-kills`` times;
Redis is stopped (SIGTERM, or SIGKILL with ``--redis-crash``) and started again on the same
directory and port; the PostgreSQL cluster is stopped (``pg_ctlcluster … stop -m fast``) for
``--postgres-down-s``. A worker, the deliverer or the gateway that exits, killed or by itself
(docs/reliability.md #11), is started again after a second, as a supervisor would.

Afterwards it waits until every acknowledged event has its outcome, or nothing moves for
``--stall-s``, and checks the database: lost, stored twice, accepted twice. Then it waits
until every acknowledged, accepted "Fault Probe" has its webhook and no trigger is still
open (or, again, nothing moves for ``--stall-s``), and checks the webhooks: missing, repeated
(a webhook-id received again: allowed, delivery is at least once), and events whose webhooks
came with more than one webhook-id.

    python bench/faults.py                                   # 20 000 events over 120 s
    python bench/faults.py --events 600 --seconds 30 --kills 1 --postgres-down-s 10
    python bench/faults.py --no-postgres-outage --redis-crash --keep-logs /tmp/faults

Results: a readable summary, then one JSON line. The exit status is 1 when an acknowledged
event was lost, something was stored or accepted twice, an acknowledged and accepted probe
never got its webhook, or an event's webhooks came with more than one webhook-id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from sqlalchemy import Engine, func, select

from sluice.actions import Action
from sluice.cli.embedded_redis import free_port
from sluice.producer import EventClient, PublishError
from sluice.producer.events import as_utc
from sluice.producer.wire import INGEST_QUEUE
from sluice.producer.workspace_ids import announce
from sluice.store.automations import OPEN, Automation, add_automation
from sluice.store.engine import make_engine
from sluice.store.schema import (
    dead_letters,
    events,
    order_claims,
    outcomes,
    repeats,
    trigger_deliveries,
)
from sluice.store.workspaces import NewWorkspace, create_workspace

sys.path.insert(0, str(Path(__file__).parent))
from cputime import children_of
from throughput import machine

PG_VERSION = "15"
FIRST_PG_PORT = 5499
DATABASE = "sluice"
TRUST_ON_LOOPBACK = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
WORKER_ARGS = [
    "worker",
    "--no-deliver",
    "--queues",
    INGEST_QUEUE,
    "--concurrency",
    "2",
    "--loglevel",
    "INFO",
]
# The trigger deliverer's ``sluice`` arguments; it is started, killed and restarted like
# the workers, and ready once a warm-up webhook has arrived.
DELIVERER_ARGS = ["deliverer"]
PROBE_EVENT = "Fault Probe"  # the automation's event name
WARM_UP_TIMEOUT_S = 90
RESTART_DELAY_S = 1.0
RETRY_SLEEP_S = 0.5
GIVE_UP_AFTER_S = 120  # past the load's end, a send still failing is abandoned (unsent)
CONFIRMATION_SHARE = 0.2
ORDERS_PER_CONFIRMATION = 0.8  # fewer order ids than confirmations: some repeat
CLIENT_BATCH = 100
HTTP_BATCH = 50
POLL_S = 2.0
TIMELINE_BUCKET_S = 10


# --- services of our own ------------------------------------------------------------------


def run(command: Sequence[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def clusters() -> list[tuple[str, str, int]]:
    """``(version, name, port)`` of every PostgreSQL cluster on this machine."""
    rows = [line.split() for line in run(["pg_lsclusters", "--no-header"]).splitlines()]
    return [(row[0], row[1], int(row[2])) for row in rows if len(row) >= 3]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_pg_port() -> int:
    taken = {port for _, _, port in clusters()}
    for port in range(FIRST_PG_PORT, FIRST_PG_PORT + 100):
        if port not in taken and port_is_free(port):
            return port
    raise RuntimeError(f"no free port for PostgreSQL from {FIRST_PG_PORT}")


class PostgresCluster:
    """A throwaway cluster: ``pg_createcluster``, trust on loopback, ``pg_dropcluster``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.created = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def create(self) -> PostgresCluster:
        if any(name == self.name for _, name, _ in clusters()):
            raise RuntimeError(f"a cluster {PG_VERSION}/{self.name} exists already")
        self.port = free_pg_port()
        run(["pg_createcluster", PG_VERSION, self.name, "-p", str(self.port)])
        self.created = True
        # Its own pg_hba.conf only: peer/scram by default, trust on loopback here.
        Path(f"/etc/postgresql/{PG_VERSION}/{self.name}/pg_hba.conf").write_text(TRUST_ON_LOOPBACK)
        self.start()
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return self

    def _ctl(self, *action: str) -> None:
        run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, self.name, *action])

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def drop(self) -> None:
        if self.created or any(name == self.name for _, name, _ in clusters()):
            run(["pg_dropcluster", "--stop", PG_VERSION, self.name])
            self.created = False


class RedisServer:
    """``redis-server`` with AOF as in production (docs/reliability.md #7), restartable on
    the same directory and port so that the AOF is reloaded."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        command += ["--maxmemory-policy", "noeviction", "--dir", str(self.data_dir)]
        command += ["--logfile", str(self.data_dir / "redis.log"), "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    break
            except redis.BusyLoadingError:
                pass  # the AOF is being loaded
            except redis.ConnectionError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start (see {self.data_dir})") from exc
            time.sleep(0.05)
        client.close()
        return self

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (Redis writes its AOF out and exits) or, with ``crash``, SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Service:
    """One ``sluice`` subcommand as a child process, appending to its log file."""

    def __init__(
        self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.command = [str(Path(sys.executable).with_name("sluice")), *args]
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False  # by the fault plan, on purpose

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_until(self, ready: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.exit_code() is not None or time.monotonic() > deadline:
                tail = self.log_text()[-3000:]
                raise RuntimeError(f"{self.name}: no {what} (exit {self.exit_code()}):\n{tail}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the main process and its pool, like a container kill."""
        if self.process is None or self.process.poll() is not None:
            return
        pool = children_of(self.process.pid)
        self.process.kill()
        for pid in pool:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 40) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()


def worker_ready(worker: Service, starts: int) -> Callable[[], bool]:
    return lambda: worker.log_text().count(" ready.") >= starts


def gateway_ready(url: str) -> Callable[[], bool]:
    def answered() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return answered


@dataclass
class Exit:
    at: float  # wall clock
    service: str
    code: int
    on_purpose: bool


class Supervisor:
    """Starts again, after ``RESTART_DELAY_S``, any service that exits."""

    def __init__(self, services: Sequence[Service]) -> None:
        self.services = list(services)
        self.exits: list[Exit] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def kill(self, service: Service) -> None:
        with self._lock:
            service.killed = True
            service.kill()

    def _watch(self) -> None:
        due: dict[str, float] = {}  # service name -> when it starts again
        while not self._stopping.wait(0.2):
            with self._lock:
                for service in self.services:
                    code = service.exit_code()
                    if code is None:
                        continue
                    if service.name not in due:
                        self.exits.append(Exit(time.time(), service.name, code, service.killed))
                        due[service.name] = time.monotonic() + RESTART_DELAY_S
                    elif time.monotonic() >= due[service.name]:
                        del due[service.name]
                        service.killed = False
                        service.start()


@dataclass(frozen=True, slots=True)
class Arrival:
    """One webhook request as the receiver saw it."""

    webhook_id: str  # the header
    message_id: str  # data.event.message_id
    workspace_id: str  # data.workspace_id
    trigger_id: str  # data.trigger_id
    at: float  # wall clock


class Receiver:
    """The webhook endpoint: a threaded HTTP/1.1 server (keep-alive, as real receivers do)
    in its own thread, answering 204 to every POST and recording it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        self.malformed = 0  # requests without a webhook-id or the payload's ids
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="receiver", daemon=True
        )

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def record(self, webhook_id: str, body: bytes) -> None:
        try:
            payload = json.loads(body)
            data = payload["data"]
            arrival = Arrival(
                webhook_id,
                str(data["event"]["message_id"]),
                str(data["workspace_id"]),
                str(data["trigger_id"]),
                time.time(),
            )
        except (ValueError, KeyError, TypeError):
            with self.lock:
                self.malformed += 1
            return
        with self.lock:
            if webhook_id:
                self.arrivals.append(arrival)
            else:
                self.malformed += 1

    def of(self, workspace_id: str) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.workspace_id == workspace_id]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.record(self.headers.get("webhook-id") or "", body)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --- load ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """One event to send: a page view, a probe (``PROBE_EVENT``, which fires the webhook
    automation), or a confirmation of ``order_id``."""

    message_id: str
    user_id: str
    order_id: str | None
    n: int
    probe: bool = False

    @property
    def kind(self) -> str:
        if self.order_id is not None:
            return "confirmation"
        return "probe" if self.probe else "page_view"

    @property
    def name(self) -> str:
        if self.order_id is not None:
            return "Order Completed"
        return PROBE_EVENT if self.probe else "Page Viewed"


def make_specs(prefix: str, count: int, orders: int, seed: int, probe_share: float) -> list[Spec]:
    """Confirmations and users drawn as before probes existed; probes (``probe_share`` of
    all events) replace page views, drawn from a generator of their own."""
    rng, probes = random.Random(seed), random.Random(f"probes-{seed}")
    made = []
    for n in range(count):
        order = None
        if rng.random() < CONFIRMATION_SHARE:
            order = f"order-{rng.randrange(orders)}"
        probe = probes.random() < probe_share / (1 - CONFIRMATION_SHARE) and order is None
        made.append(Spec(f"{prefix}-{n:07d}", f"user-{rng.randrange(2000)}", order, n, probe))
    return made


def properties_of(spec: Spec) -> dict[str, Any]:
    if spec.order_id is not None:
        return {"orderId": spec.order_id, "total": 42}
    if spec.probe:
        return {"n": spec.n}
    return {"path": f"/p/{spec.n % 97}", "n": spec.n}


def client_event(spec: Spec) -> dict[str, Any]:
    return {
        "message_id": spec.message_id,
        "kind": "custom" if spec.order_id is None else "confirmation",
        "name": spec.name,
        "user_id": spec.user_id,
        "properties": properties_of(spec),
    }


def segment_call(spec: Spec) -> dict[str, Any]:
    """A Segment ``track`` call (README, API); "Order Completed" makes a confirmation."""
    return {
        "type": "track",
        "messageId": spec.message_id,
        "userId": spec.user_id,
        "event": spec.name,
        "properties": properties_of(spec),
    }


class SendFailed(Exception):
    """A send the load generator retries; ``queued`` were taken all the same."""

    def __init__(self, what: str, queued: Sequence[str] = ()) -> None:
        super().__init__(what)
        self.what = what
        self.queued = list(queued)


class Ledger:
    """What the producers sent and what was acknowledged, shared by their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[str, Spec] = {}
        self.acked: dict[str, float] = {}  # message id -> wall clock of its acknowledgement
        self.failures: Counter[str] = Counter()
        self.longest_outage_s: dict[str, float] = defaultdict(float)
        self.unsent: Counter[str] = Counter()

    def offer(self, specs: Sequence[Spec]) -> None:
        with self.lock:
            self.sent.update((s.message_id, s) for s in specs)

    def ack(self, message_ids: Sequence[str]) -> None:
        now = time.time()
        with self.lock:
            self.acked.update((m, now) for m in message_ids)

    def fail(self, producer: str, what: str) -> None:
        with self.lock:
            self.failures[f"{producer}: {what}"] += 1

    def outage(self, producer: str, seconds: float) -> None:
        with self.lock:
            self.longest_outage_s[producer] = max(self.longest_outage_s[producer], seconds)


Send = Callable[[list[Spec]], list[str]]


def client_sender(client: EventClient) -> Send:
    def send(chunk: list[Spec]) -> list[str]:
        try:
            return client.send_batch([client_event(spec) for spec in chunk])
        except PublishError as exc:
            raise SendFailed("PublishError", exc.queued_message_ids) from exc

    return send


def error_code(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def gateway_sender(http: httpx.Client) -> Send:
    def send(chunk: list[Spec]) -> list[str]:
        try:
            answer = http.post("/v1/batch", json={"batch": [segment_call(s) for s in chunk]})
        except httpx.HTTPError as exc:
            raise SendFailed(type(exc).__name__) from exc
        if answer.status_code != 200:
            raise SendFailed(f"HTTP {answer.status_code} {error_code(answer)}".strip())
        message_ids: list[str] = answer.json()["message_ids"]
        if message_ids != [s.message_id for s in chunk]:
            raise RuntimeError(f"the gateway queued {len(message_ids)} of {len(chunk)} calls")
        return message_ids

    return send


@dataclass
class Pace:
    started: float  # monotonic
    seconds: float
    give_up_at: float  # monotonic: sends still failing then are abandoned


def produce(
    name: str, specs: list[Spec], batch: int, send: Send, pace: Pace, ledger: Ledger
) -> None:
    """Send ``specs`` in chunks spread evenly over the load; retry a failed chunk (same ids)."""
    rate = len(specs) / pace.seconds
    for start in range(0, len(specs), batch):
        time.sleep(max(0.0, pace.started + start / rate - time.monotonic()))
        chunk = specs[start : start + batch]
        ledger.offer(chunk)
        left = send_until_acked(name, chunk, send, pace.give_up_at, ledger)
        if left:
            ledger.unsent[name] += left + len(specs) - start - len(chunk)
            return


def send_until_acked(
    name: str, chunk: list[Spec], send: Send, give_up_at: float, ledger: Ledger
) -> int:
    """Send ``chunk`` until it is acknowledged or ``give_up_at``; return how many were not."""
    failing_since: float | None = None
    while chunk and time.monotonic() < give_up_at:
        try:
            ledger.ack(send(chunk))
            chunk = []
        except SendFailed as failed:
            ledger.ack(failed.queued)
            queued = set(failed.queued)
            chunk = [spec for spec in chunk if spec.message_id not in queued]
            ledger.fail(name, failed.what)
        except Exception as exc:  # retried as well, and reported: nothing counts unless acked
            ledger.fail(name, f"unexpected {type(exc).__name__}: {str(exc)[:80]}")
        if chunk:
            failing_since = failing_since or time.monotonic()
            time.sleep(RETRY_SLEEP_S)
    if failing_since is not None:
        ledger.outage(name, time.monotonic() - failing_since)
    return len(chunk)


def in_thread(name: str, target: Callable[[], None], errors: list[str]) -> threading.Thread:
    """A daemon thread whose exception is recorded rather than lost."""

    def guarded() -> None:
        try:
            target()
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


# --- faults -------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # worker_kill | deliverer_kill | redis_restart | postgres_outage
    at_s: float  # planned, from the start of the load
    target: str = ""  # the service a kill is for
    started: float = 0.0  # wall clock
    ended: float = 0.0  # wall clock: the service is back (a killed process: at once)
    unacked: int | None = None  # messages held by workers at the start (Redis's view)


def fault_plan(args: argparse.Namespace) -> list[Fault]:
    """Worker kills spread from 10% to 85% of the load (with the defaults the second falls in
    the PostgreSQL outage, while the workers hold retrying batches), deliverer kills from
    20% to 90% (the first while webhooks flow steadily, before the outages stop them),
    Redis at 25%, PostgreSQL at 40%."""
    seconds = args.seconds
    plan = [
        Fault("worker_kill", seconds * (0.1 + 0.75 * i / max(1, args.kills - 1)), f"worker{i % 2}")
        for i in range(args.kills)
    ]
    plan += [
        Fault(
            "deliverer_kill",
            seconds * (0.2 + 0.7 * i / max(1, args.deliverer_kills - 1)),
            "deliverer",
        )
        for i in range(args.deliverer_kills)
    ]
    if not args.no_redis_restart:
        plan.append(Fault("redis_restart", seconds * 0.25))
    if not args.no_postgres_outage:
        plan.append(Fault("postgres_outage", seconds * 0.4))
    return sorted(plan, key=lambda fault: fault.at_s)


@dataclass
class Stage:
    """What the faults act on."""

    services: list[Service]  # the kills' targets, by name
    supervisor: Supervisor
    redis: RedisServer
    postgres: PostgresCluster
    redis_down_s: float
    redis_crash: bool
    postgres_down_s: float


def inject(fault: Fault, stage: Stage, started: float) -> None:
    time.sleep(max(0.0, started + fault.at_s - time.monotonic()))
    fault.unacked = broker_state(stage.redis.url).get("unacked")
    fault.started = time.time()
    if fault.kind in ("worker_kill", "deliverer_kill"):
        stage.supervisor.kill(next(s for s in stage.services if s.name == fault.target))
    elif fault.kind == "redis_restart":
        stage.redis.stop(crash=stage.redis_crash)
        time.sleep(stage.redis_down_s)
        stage.redis.start()
    else:
        stage.postgres.stop()
        time.sleep(stage.postgres_down_s)
        stage.postgres.start()
    fault.ended = time.time()


def run_faults(plan: list[Fault], stage: Stage, started: float, errors: list[str]) -> None:
    """Each fault in its own thread, at its time: a kill may fall inside an outage."""
    threads = [
        in_thread(f"{fault.kind}@{fault.at_s:.0f}s", partial(inject, fault, stage, started), errors)
        for fault in plan
    ]
    for thread in threads:
        thread.join()


# --- the verdict --------------------------------------------------------------------------


def decided_ids(engine: Engine, workspace_id: str) -> set[str]:
    query = select(outcomes.c.message_id).where(outcomes.c.workspace_id == workspace_id)
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def wait_for_outcomes(
    engine: Engine, workspace_id: str, acked: set[str], timeout_s: float, stall_s: float
) -> float:
    """Poll until every acknowledged id is decided, nothing moves for ``stall_s`` or
    ``timeout_s`` passes; return the seconds waited."""
    started = last_progress = time.monotonic()
    fewest = len(acked) + 1
    while True:
        try:
            missing = len(acked - decided_ids(engine, workspace_id))
        except Exception:
            missing = fewest  # the database is not back yet: no progress
        now = time.monotonic()
        if missing < fewest:
            fewest, last_progress = missing, now
        if not missing or now - last_progress > stall_s or now - started > timeout_s:
            return now - started
        time.sleep(POLL_S)


def duplicate_rows(engine: Engine, table: Any, workspace_id: str) -> int:
    query = (
        select(table.c.message_id)
        .where(table.c.workspace_id == workspace_id)
        .group_by(table.c.message_id)
        .having(func.count() > 1)
    )
    with engine.connect() as conn:
        return len(conn.execute(query).all())


@dataclass
class Rows:
    outcomes: dict[str, tuple[str, str | None, datetime]]  # id -> status, reason, decided_at
    events: dict[str, str | None]  # id -> order id of a stored confirmation
    claims: dict[str, str]  # order id -> claiming message id
    repeats: int
    dead_letters: int
    duplicate_events: int
    duplicate_outcomes: int


def read_rows(engine: Engine, workspace_id: str) -> Rows:
    ws = workspace_id
    with engine.connect() as conn:
        decided = conn.execute(
            select(
                outcomes.c.message_id, outcomes.c.status, outcomes.c.reason, outcomes.c.decided_at
            ).where(outcomes.c.workspace_id == ws)
        )
        stored = conn.execute(
            select(events.c.message_id, events.c.kind, events.c.properties).where(
                events.c.workspace_id == ws
            )
        )
        claims = conn.execute(
            select(order_claims.c.order_id, order_claims.c.message_id).where(
                order_claims.c.workspace_id == ws
            )
        )
        return Rows(
            outcomes={m: (s, r, as_utc(at)) for m, s, r, at in decided},
            events={
                m: (props or {}).get("orderId") if kind == "confirmation" else None
                for m, kind, props in stored
            },
            claims={order: m for order, m in claims},
            repeats=conn.execute(
                select(func.count()).select_from(repeats).where(repeats.c.workspace_id == ws)
            ).scalar_one(),
            dead_letters=conn.execute(select(func.count()).select_from(dead_letters)).scalar_one(),
            duplicate_events=duplicate_rows(engine, events, ws),
            duplicate_outcomes=duplicate_rows(engine, outcomes, ws),
        )


def order_checks(ledger: Ledger, rows: Rows) -> dict[str, int]:
    accepted: dict[str, list[str]] = defaultdict(list)
    decided: Counter[str] = Counter()
    for spec in ledger.sent.values():
        verdict = rows.outcomes.get(spec.message_id)
        if spec.order_id is None or verdict is None:
            continue
        decided[spec.order_id] += 1
        if verdict[0] == "accepted":
            accepted[spec.order_id].append(spec.message_id)
    stored: Counter[str] = Counter(order for order in rows.events.values() if order)
    twice = {o for o, ids in accepted.items() if len(ids) > 1} | {
        o for o, n in stored.items() if n > 1
    }
    return {
        "orders_confirmed": len(decided),
        "orders_repeated": sum(1 for n in decided.values() if n > 1),
        "orders_accepted_more_than_once": len(twice),
        "orders_decided_but_never_accepted": sum(1 for o in decided if not accepted.get(o)),
        "order_claims_not_the_accepted_event": sum(
            1 for o, ids in accepted.items() if len(ids) == 1 and rows.claims.get(o) != ids[0]
        ),
    }


def verdict_checks(ledger: Ledger, rows: Rows) -> dict[str, Any]:
    acked = set(ledger.acked)
    sent = set(ledger.sent)
    verdicts: Counter[str] = Counter()
    unexpected = 0
    for message_id in acked & rows.outcomes.keys():
        status, reason, _ = rows.outcomes[message_id]
        kind = ledger.sent[message_id].kind
        verdicts[f"{kind} {status}" + (f" {reason}" if reason else "")] += 1
        expected: set[tuple[str, str | None]] = {("accepted", None)}
        if kind == "confirmation":
            expected.add(("discarded", "duplicate_order"))
        unexpected += (status, reason) not in expected
    return {
        "events_sent": len(sent),
        "events_acknowledged": len(acked),
        "events_decided": len(acked & rows.outcomes.keys()),
        "lost": len(acked - rows.outcomes.keys()),
        "unacknowledged_but_decided": len((sent - acked) & rows.outcomes.keys()),
        "outcomes_for_unknown_ids": len(rows.outcomes.keys() - sent),
        "stored_twice_events": rows.duplicate_events,
        "stored_twice_outcomes": rows.duplicate_outcomes,
        "events_row_but_not_accepted": sum(
            1 for m in rows.events if m not in rows.outcomes or rows.outcomes[m][0] != "accepted"
        ),
        "accepted_without_events_row": sum(
            1 for m, (s, _, _) in rows.outcomes.items() if s == "accepted" and m not in rows.events
        ),
        "unexpected_verdicts": unexpected,
        "verdicts": dict(sorted(verdicts.items())),
        "repeats_recorded": rows.repeats,
        "dead_letters": rows.dead_letters,
    }


def recovery(
    plan: list[Fault], ledger: Ledger, rows: Rows, load_started: float, hooks: Webhooks
) -> list[dict[str, Any]]:
    """Per fault: seconds from its start until every event acknowledged before it was
    decided (the outcomes' ``decided_at``), and until every expected probe acknowledged
    before it had its first webhook."""
    report = []
    first = hooks.first_arrival()
    for fault in plan:
        before = [m for m, at in ledger.acked.items() if at <= fault.started]
        times = [rows.outcomes[m][2].timestamp() for m in before if m in rows.outcomes]
        cleared = max(times, default=fault.started) - fault.started
        probes = [m for m in hooks.expected if ledger.acked[m] <= fault.started]
        arrived = [first[m] for m in probes if m in first]
        hooked = max(arrived, default=fault.started) - fault.started
        report.append(
            {
                "fault": fault.kind,
                "target": fault.target or None,
                "at_s": round(fault.started - load_started, 1),
                "lasted_s": round(fault.ended - fault.started, 1),
                "unacked_at_start": fault.unacked,
                "backlog_decided_after_s": round(max(0.0, cleared), 1),
                "backlog_undecided": len(before) - len(times),
                "webhook_backlog_received_after_s": round(max(0.0, hooked), 1),
                "webhook_backlog_missing": len(probes) - len(arrived),
            }
        )
    return report


def lost_detail(ledger: Ledger, rows: Rows, load_started: float) -> dict[str, Any]:
    """A few lost ids, and when (from the start of the load) the lost were acknowledged."""
    lost = sorted(ledger.acked.keys() - rows.outcomes.keys())
    times = [ledger.acked[m] - load_started for m in lost]
    window = [round(min(times), 1), round(max(times), 1)] if times else []
    return {"sample": lost[:5], "acknowledged_at_s": window}


def timeline(rows: Rows, load_started: float, acked: set[str]) -> list[int]:
    """Acknowledged events decided per ``TIMELINE_BUCKET_S`` from the start of the load."""
    buckets: Counter[int] = Counter()
    for message_id in acked & rows.outcomes.keys():
        at = rows.outcomes[message_id][2].timestamp()
        buckets[max(0, int((at - load_started) // TIMELINE_BUCKET_S))] += 1
    return [buckets[i] for i in range(max(buckets, default=-1) + 1)]


LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*")
LOG_NOISE = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|\b\d+(\.\d+)?s?\b")


def log_errors(services: Sequence[Service], limit: int = 4) -> dict[str, dict[str, int]]:
    """Per process kind: the distinct ERROR/CRITICAL lines (ids and numbers blanked)."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for service in services:
        kind = service.name.rstrip("0123456789")
        for line in service.log_text().splitlines():
            if re.search(r"\b(ERROR|CRITICAL)\b|Unrecoverable", line):
                text = LOG_NOISE.sub("N", LOG_PREFIX.sub("", line))[:150]
                found[kind][text] += 1
    return {kind: dict(lines.most_common(limit)) for kind, lines in found.items()}


def broker_state(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return {"queued": int(client.llen(INGEST_QUEUE)), "unacked": int(client.hlen("unacked"))}
    except redis.RedisError:
        return {}
    finally:
        client.close()


# --- webhooks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriggerRow:
    id: str
    message_id: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None


@dataclass
class Webhooks:
    """What the automation's triggers did, and what the receiver got."""

    expected: set[str]  # acknowledged, accepted probes: each must have its webhook
    arrivals: list[Arrival]  # requests for the benchmark's workspace
    triggers: dict[str, TriggerRow]  # message id -> its trigger (one per event and automation)
    malformed: int  # requests the receiver could not read
    decided: dict[str, float]  # expected probe -> its outcome's decided_at (wall clock)

    def first_arrival(self) -> dict[str, float]:
        first: dict[str, float] = {}
        for arrival in self.arrivals:
            first[arrival.message_id] = min(arrival.at, first.get(arrival.message_id, arrival.at))
        return first

    def ids_by_message(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for arrival in self.arrivals:
            found[arrival.message_id].add(arrival.webhook_id)
        return found

    def requests_by_id(self) -> Counter[str]:
        return Counter(arrival.webhook_id for arrival in self.arrivals)

    def delays_s(self) -> dict[str, float]:
        """Expected probe -> seconds from its verdict to its first webhook."""
        first = self.first_arrival()
        return {m: first[m] - self.decided[m] for m in self.expected if m in first}


def spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    at = {"p50": 0.5, "p99": 0.99}
    cuts = {k: ordered[min(len(ordered) - 1, int(q * len(ordered)))] for k, q in at.items()}
    return {k: round(v, 2) for k, v in {**cuts, "max": ordered[-1]}.items()}


def expected_probes(ledger: Ledger, rows: Rows) -> set[str]:
    return {
        m
        for m in ledger.acked
        if ledger.sent[m].probe and m in rows.outcomes and rows.outcomes[m][0] == "accepted"
    }


def open_triggers(engine: Engine, automation_id: str) -> int:
    query = (
        select(func.count())
        .select_from(trigger_deliveries)
        .where(
            trigger_deliveries.c.automation_id == automation_id,
            trigger_deliveries.c.status.in_(OPEN),
        )
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def wait_for_webhooks(
    engine: Engine,
    automation_id: str,
    received: Callable[[], set[str]],
    expected: set[str],
    timeout_s: float,
    stall_s: float,
) -> float:
    """Poll until every expected probe has its webhook and none of the automation's
    triggers is open (a webhook that arrived but whose attempt was never recorded is sent
    again: that repeat belongs to the result), nothing moves for ``stall_s`` or
    ``timeout_s`` passes; return the seconds waited."""
    started = last_progress = time.monotonic()
    fewest_missing = fewest_open = len(expected) + 1
    while True:
        missing = len(expected - received())
        try:
            still_open = open_triggers(engine, automation_id)
        except Exception:
            still_open = fewest_open  # the database is not answering: no progress there
        now = time.monotonic()
        if missing < fewest_missing or still_open < fewest_open:
            last_progress = now
            fewest_missing = min(fewest_missing, missing)
            fewest_open = min(fewest_open, still_open)
        done = not missing and not still_open
        if done or now - last_progress > stall_s or now - started > timeout_s:
            return now - started
        time.sleep(POLL_S)


def read_triggers(engine: Engine, automation_id: str) -> dict[str, TriggerRow]:
    t = trigger_deliveries.c
    query = select(
        t.id, t.message_id, t.status, t.attempts, t.last_status_code, t.last_error
    ).where(t.automation_id == automation_id)
    with engine.connect() as conn:
        return {row.message_id: TriggerRow(*row) for row in conn.execute(query)}


def webhook_checks(hooks: Webhooks) -> dict[str, Any]:
    received = hooks.ids_by_message()
    trigger_ids = {m: t.id for m, t in hooks.triggers.items()}
    return {
        "triggers": len(hooks.triggers),
        "trigger_statuses": dict(Counter(t.status for t in hooks.triggers.values())),
        "webhooks_expected": len(hooks.expected),
        "webhooks_received": len(hooks.expected & received.keys()),
        "webhooks_missing": len(hooks.expected - received.keys()),
        "webhook_requests": len(hooks.arrivals),
        "webhooks_repeated": sum(n - 1 for n in hooks.requests_by_id().values()),
        "webhook_ids_per_event_over_1": sum(1 for ids in received.values() if len(ids) > 1),
        # accepted probes whose send was not acknowledged (a retried send that had got
        # through) fire too; anything else here is a webhook nothing asked for
        "webhooks_not_expected": len(received.keys() - hooks.expected),
        "webhook_id_not_its_trigger": sum(
            1
            for a in hooks.arrivals
            if a.webhook_id != a.trigger_id or a.webhook_id != trigger_ids.get(a.message_id)
        ),
        "expected_without_trigger": len(hooks.expected - hooks.triggers.keys()),
        "malformed_requests": hooks.malformed,
        "verdict_to_webhook_s": spread(list(hooks.delays_s().values())),
    }


def log_lines(logs: Mapping[str, str], needle: str, limit: int = 8) -> list[str]:
    """The lines of every process's log that mention ``needle``: the first and the last
    ones when there are more than ``limit`` (the first failure, the last attempt)."""
    found = []
    for name, text in logs.items():
        found += [f"{name}: {line[:240]}" for line in text.splitlines() if needle in line]
    if len(found) <= limit:
        return found
    head = limit // 2
    return [*found[:head], f"… {len(found) - limit} more …", *found[head - limit :]]


def webhook_detail(
    hooks: Webhooks, services: Sequence[Service], load_started: float, limit: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """A few missing and repeated webhooks, events whose webhooks came with more than one
    webhook-id, and the slowest webhooks after their verdicts, each with its trigger's row,
    the requests received (by webhook-id), when (from the start of the load) it was decided
    and first received, and the log lines that name its trigger."""
    received = hooks.ids_by_message()
    requests = hooks.requests_by_id()
    first = hooks.first_arrival()
    delays = hooks.delays_s()
    logs = {service.name: service.log_text() for service in services}

    def since_load(at: float | None) -> float | None:
        return None if at is None else round(at - load_started, 1)

    def about(message_id: str) -> dict[str, Any]:
        trigger = hooks.triggers.get(message_id)
        ids = sorted(received.get(message_id, set()))
        return {
            "message_id": message_id,
            "decided_at_s": since_load(hooks.decided.get(message_id)),
            "first_webhook_at_s": since_load(first.get(message_id)),
            "trigger": None
            if trigger is None
            else {
                "id": trigger.id,
                "status": trigger.status,
                "attempts": trigger.attempts,
                "last_status_code": trigger.last_status_code,
                "last_error": trigger.last_error,
            },
            "requests": {webhook_id: requests[webhook_id] for webhook_id in ids},
            "log": [] if trigger is None else log_lines(logs, trigger.id),
        }

    repeated = sorted({a.message_id for a in hooks.arrivals if requests[a.webhook_id] > 1})
    return {
        "missing": [about(m) for m in sorted(hooks.expected - received.keys())[:limit]],
        "repeated": [about(m) for m in repeated[:limit]],
        "many_ids": [about(m) for m, ids in sorted(received.items()) if len(ids) > 1][:limit],
        "slowest": [about(m) for m in sorted(delays, key=delays.__getitem__, reverse=True)[:limit]],
    }


def webhook_timeline(hooks: Webhooks, load_started: float) -> list[int]:
    """Expected probes whose first webhook arrived per ``TIMELINE_BUCKET_S``."""
    buckets: Counter[int] = Counter()
    for message_id, at in hooks.first_arrival().items():
        if message_id in hooks.expected:
            buckets[max(0, int((at - load_started) // TIMELINE_BUCKET_S))] += 1
    return [buckets[i] for i in range(max(buckets, default=-1) + 1)]


# --- the run ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="total, both producers")
    parser.add_argument("--seconds", type=float, default=120, help="load duration")
    parser.add_argument("--kills", type=int, default=3, help="worker SIGKILLs")
    parser.add_argument("--deliverer-kills", type=int, default=1, help="deliverer SIGKILLs")
    parser.add_argument(
        "--probe-share",
        type=float,
        default=0.1,
        help=f'share of the events that are "{PROBE_EVENT}" (each fires a webhook)',
    )
    parser.add_argument("--no-redis-restart", action="store_true")
    parser.add_argument("--redis-down-s", type=float, default=5)
    parser.add_argument("--redis-crash", action="store_true", help="SIGKILL Redis, not SIGTERM")
    parser.add_argument("--no-postgres-outage", action="store_true")
    parser.add_argument("--postgres-down-s", type=float, default=30)
    parser.add_argument("--visibility-timeout-s", type=int, default=60)
    parser.add_argument(
        "--stall-s",
        type=float,
        default=240,
        help="stop waiting after no progress this long (keep it above the journal's grace "
        "period plus a sweep: the visibility timeout + the time limit + 90 s; a lost batch "
        "comes back after it; and above a deliverer's lease (3 x the webhook timeout + 30 s), "
        "after which a killed deliverer's triggers are attempted again)",
    )
    parser.add_argument("--drain-timeout-s", type=float, default=600)
    parser.add_argument("--keep-logs", type=Path, help="copy the process logs here")
    return parser.parse_args()


def sluice_env(redis_url: str, database_url: str, visibility_timeout_s: int) -> dict[str, str]:
    # A killed worker's batch comes back after the visibility timeout (docs/reliability.md
    # #3): minutes, not the default 15, so that recovery fits in a run. The hard time limit
    # stays under half of it (worker/celery_app.py).
    return {
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s),
        "SLUICE_TASK_TIME_LIMIT_S": str(max(1, visibility_timeout_s // 3)),
        "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "true",  # the receiver is on 127.0.0.1
    }


@dataclass
class Stack:
    scratch: Path
    postgres: PostgresCluster
    redis: RedisServer
    receiver: Receiver
    services: list[Service] = field(default_factory=list)
    supervisor: Supervisor | None = None

    @property
    def workers(self) -> list[Service]:
        return [s for s in self.services if s.name.startswith("worker")]

    @property
    def deliverer(self) -> Service:
        return next(s for s in self.services if s.name == "deliverer")

    def close(self, keep_logs: Path | None) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        for service in self.services:
            service.stop()
        self.receiver.stop()
        self.redis.stop()
        try:
            self.postgres.drop()
        finally:
            if keep_logs is not None:
                keep_logs.mkdir(parents=True, exist_ok=True)
                for log in [*self.scratch.glob("*.log"), self.scratch / "redis" / "redis.log"]:
                    if log.exists():
                        shutil.copy(log, keep_logs / log.name)
            shutil.rmtree(self.scratch, ignore_errors=True)


def start_sluice(stack: Stack, env: dict[str, str]) -> str:
    """Migrate, then two ingest workers, the deliverer and a gateway; return the gateway's
    URL. The deliverer is ready once ``warm_up`` has had its webhook."""
    migrate = Service("migrate", ["migrate"], env, stack.scratch / "migrate.log").start()
    assert migrate.process is not None
    if migrate.process.wait(timeout=120) != 0:
        raise RuntimeError(f"sluice migrate failed:\n{migrate.log_text()[-3000:]}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for i in range(2):
        args = [*WORKER_ARGS, "--hostname", f"faults{i}@%h"]
        stack.services.append(Service(f"worker{i}", args, env, stack.scratch / f"worker{i}.log"))
    deliverer_log = stack.scratch / "deliverer.log"
    stack.services.append(Service("deliverer", DELIVERER_ARGS, env, deliverer_log))
    gateway_args = ["gateway", "--host", "127.0.0.1", "--port", str(port)]
    stack.services.append(Service("gateway", gateway_args, env, stack.scratch / "gateway.log"))
    for service in stack.services:
        service.start()
    for worker in stack.workers:
        worker.wait_until(worker_ready(worker, 1), "' ready.' in the log")
    stack.services[-1].wait_until(gateway_ready(url), "200 from /healthz")
    stack.supervisor = Supervisor(stack.services).start()
    return url


def probe_automation(engine: Engine, workspace_id: str, url: str) -> Automation:
    """A webhook automation on the probe events, to the bench's receiver."""
    return add_automation(
        engine, workspace_id, PROBE_EVENT, Action.WEBHOOK, target=url, allow_private_webhooks=True
    )


def warm_up(engine: Engine, stack: Stack) -> None:
    """One probe, in a workspace of its own with its own automation to the receiver,
    through the ingest worker and the deliverer: wait for its webhook (whatever command
    the deliverer runs, this says it is serving)."""
    workspace = create_workspace(engine, "faults-warm-up")
    with redis.Redis.from_url(
        stack.redis.url
    ) as known:  # known on Redis, as `sluice workspace create` does
        announce(known, [workspace.workspace_id])
    probe_automation(engine, workspace.workspace_id, stack.receiver.url)
    client = EventClient(workspace.workspace_id, broker_url=stack.redis.url)
    try:
        client.send_batch(
            [{"message_id": "warm-up", "kind": "custom", "name": PROBE_EVENT, "user_id": "u"}]
        )
    finally:
        client.close()
    stack.deliverer.wait_until(
        lambda: bool(stack.receiver.of(workspace.workspace_id)),
        "webhook for the warm-up event",
        WARM_UP_TIMEOUT_S,
    )


@dataclass
class Load:
    ledger: Ledger
    wall_started: float
    seconds: float  # until both producers and the fault plan were done
    errors: list[str]


def run_load(
    args: argparse.Namespace, stack: Stack, url: str, workspace: NewWorkspace, plan: list[Fault]
) -> Load:
    """Both producers and the fault plan, each in a thread, to their ends."""
    assert stack.supervisor is not None
    ledger = Ledger()
    errors: list[str] = []
    orders = max(1, int(args.events * CONFIRMATION_SHARE * ORDERS_PER_CONFIRMATION))
    half = args.events // 2
    client = EventClient(workspace.workspace_id, broker_url=stack.redis.url)
    http = httpx.Client(base_url=url, auth=(workspace.write_key, ""), timeout=15)
    stage = Stage(
        stack.services,
        stack.supervisor,
        stack.redis,
        stack.postgres,
        args.redis_down_s,
        args.redis_crash,
        args.postgres_down_s,
    )
    started, wall_started = time.monotonic(), time.time()
    pace = Pace(started, args.seconds, started + args.seconds + GIVE_UP_AFTER_S)
    producers = [
        (
            "client",
            make_specs("cli", half, orders, 1, args.probe_share),
            CLIENT_BATCH,
            client_sender(client),
        ),
        (
            "gateway",
            make_specs("gw", args.events - half, orders, 2, args.probe_share),
            HTTP_BATCH,
            gateway_sender(http),
        ),
    ]
    threads = [
        in_thread(name, partial(produce, name, specs, batch, send, pace, ledger), errors)
        for name, specs, batch, send in producers
    ]
    threads.append(in_thread("faults", partial(run_faults, plan, stage, started, errors), errors))
    for thread in threads:  # each ends by itself: the producers by give_up_at at the latest
        thread.join()
    client.close()
    http.close()
    return Load(ledger, wall_started, time.monotonic() - started, errors)


def webhook_summary(result: dict[str, Any]) -> str:
    w, detail = result["webhooks"], result["webhook_detail"]
    line = (
        f'webhooks ("{PROBE_EVENT}"): expected {w["webhooks_expected"]}, received '
        f"{w['webhooks_received']}, MISSING {w['webhooks_missing']}; requests "
        f"{w['webhook_requests']}, repeated {w['webhooks_repeated']} (at least once: "
        f"allowed); events with more than one webhook-id {w['webhook_ids_per_event_over_1']}; "
        f"not expected {w['webhooks_not_expected']}; webhook-id not its trigger's "
        f"{w['webhook_id_not_its_trigger']}; expected without a trigger "
        f"{w['expected_without_trigger']}; malformed {w['malformed_requests']}; "
        f"verdict to webhook s: {w['verdict_to_webhook_s']}"
    )
    for what, samples in detail.items():
        line += "".join(f"\n  {what}: {json.dumps(sample)}" for sample in samples)
    return line


def summary(result: dict[str, Any]) -> str:
    c, w = result["checks"], result["webhooks"]
    lines = [
        f"events sent {c['events_sent']}, acknowledged {c['events_acknowledged']}, "
        f"decided {c['events_decided']}, LOST {c['lost']} {result['lost'] if c['lost'] else ''}",
        f"stored twice: events {c['stored_twice_events']}, outcomes "
        f"{c['stored_twice_outcomes']}; events row not accepted "
        f"{c['events_row_but_not_accepted']}; accepted without events row "
        f"{c['accepted_without_events_row']}; unexpected verdicts {c['unexpected_verdicts']}",
        f"orders: {result['orders']}",
        webhook_summary(result),
        f"triggers {w['triggers']}, by status: {w['trigger_statuses']}",
        f"verdicts: {c['verdicts']}",
        f"redelivered repeats recorded {c['repeats_recorded']}, dead letters "
        f"{c['dead_letters']}, unacknowledged but decided {c['unacknowledged_but_decided']}",
        f"restarts: {result['restarts']}",
        f"send failures (retried): {result['send_failures']}; unsent: {result['unsent']}",
        f"longest producer outage s: {result['longest_producer_outage_s']}",
    ]
    lines += [f"fault: {fault}" for fault in result["faults"]]
    lines += [
        f"load {result['load_s']} s, then waited {result['drain_s']} s for outcomes, "
        f"{result['webhook_wait_s']} s for webhooks; broker left: {result['broker_left']}",
        f"decided per {TIMELINE_BUCKET_S} s: {result['decided_timeline']}",
        f"first webhooks per {TIMELINE_BUCKET_S} s: {result['webhook_timeline']}",
        f"log errors: {json.dumps(result['log_errors'], indent=1)}",
        f"thread errors: {result['thread_errors']}",
        f"total {result['total_s']} s",
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    env = sluice_env(stack.redis.url, stack.postgres.url, args.visibility_timeout_s)
    url = start_sluice(stack, env)
    engine = make_engine(stack.postgres.url)
    workspace = create_workspace(engine, "faults")
    with redis.Redis.from_url(
        stack.redis.url
    ) as known:  # known on Redis, as `sluice workspace create` does
        announce(known, [workspace.workspace_id])
    automation = probe_automation(engine, workspace.workspace_id, stack.receiver.url)
    warm_up(engine, stack)
    plan = fault_plan(args)
    load = run_load(args, stack, url, workspace, plan)
    ledger, load_started = load.ledger, load.wall_started
    acked = set(ledger.acked)
    drain_s = wait_for_outcomes(
        engine, workspace.workspace_id, acked, args.drain_timeout_s, args.stall_s
    )
    rows = read_rows(engine, workspace.workspace_id)
    expected = expected_probes(ledger, rows)
    receiver, ws = stack.receiver, workspace.workspace_id
    webhook_wait_s = wait_for_webhooks(
        engine,
        automation.id,
        lambda: {a.message_id for a in receiver.of(ws)},
        expected,
        args.drain_timeout_s,
        args.stall_s,
    )
    triggers = read_triggers(engine, automation.id)
    engine.dispose()
    decided = {m: rows.outcomes[m][2].timestamp() for m in expected}
    hooks = Webhooks(expected, receiver.of(ws), triggers, receiver.malformed, decided)
    assert stack.supervisor is not None
    exits = stack.supervisor.exits
    return {
        "bench": "faults",
        "checks": verdict_checks(ledger, rows),
        "orders": order_checks(ledger, rows),
        "webhooks": webhook_checks(hooks),
        "lost": lost_detail(ledger, rows, load_started),
        "webhook_detail": webhook_detail(hooks, stack.services, load_started),
        "restarts": {
            "killed_on_purpose": sum(e.on_purpose for e in exits),
            "exited_by_themselves": [
                {"service": e.service, "code": e.code, "at_s": round(e.at - load_started, 1)}
                for e in exits
                if not e.on_purpose
            ],
        },
        "send_failures": dict(ledger.failures),
        "unsent": dict(ledger.unsent),
        "longest_producer_outage_s": {k: round(v, 1) for k, v in ledger.longest_outage_s.items()},
        "faults": recovery(plan, ledger, rows, load_started, hooks),
        "drain_s": round(drain_s, 1),
        "webhook_wait_s": round(webhook_wait_s, 1),
        "load_s": round(load.seconds, 1),
        "broker_left": broker_state(stack.redis.url),
        "decided_timeline": timeline(rows, load_started, acked),
        "webhook_timeline": webhook_timeline(hooks, load_started),
        "log_errors": log_errors(stack.services),
        "thread_errors": load.errors,
        "settings": {
            "events": args.events,
            "seconds": args.seconds,
            "visibility_timeout_s": args.visibility_timeout_s,
            "kills": args.kills,
            "deliverer_kills": args.deliverer_kills,
            "probe_share": args.probe_share,
            "deliverer": " ".join(DELIVERER_ARGS),
            "redis_crash": args.redis_crash,
            "postgres_down_s": None if args.no_postgres_outage else args.postgres_down_s,
        },
        "machine": machine(),
        "command": " ".join(sys.argv),
    }


def failed(result: dict[str, Any]) -> bool:
    c, orders, w = result["checks"], result["orders"], result["webhooks"]
    return bool(
        c["lost"]
        or w["webhooks_missing"]
        or w["webhook_ids_per_event_over_1"]
        or c["stored_twice_events"]
        or c["stored_twice_outcomes"]
        or c["events_row_but_not_accepted"]
        or c["accepted_without_events_row"]
        or orders["orders_accepted_more_than_once"]
        or result["thread_errors"]
    )


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        raise SystemExit("pg_createcluster needs root")
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="sluice-faults-"))
    stack = Stack(
        scratch,
        PostgresCluster(f"sluicefaults{os.getpid()}"),
        RedisServer(scratch / "redis"),
        Receiver(),
    )
    try:
        stack.receiver.start()
        stack.redis.start()
        stack.postgres.create()
        result = measure(args, stack)
    finally:
        stack.close(args.keep_logs)
    result["total_s"] = round(time.monotonic() - began, 1)
    print(summary(result))
    print(json.dumps(result))
    sys.exit(1 if failed(result) else 0)


if __name__ == "__main__":
    main()
