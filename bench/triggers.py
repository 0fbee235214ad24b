"""Webhook triggers, before and after: the same phases on two versions of the code, in one
run, side by side.

A leg is one version of the code in one deployment. Each leg gets a fresh database (schema
from the current code's migrations; the older code works on it, newer migrations only add
indexes), an emptied Redis database and processes of its own, started as
``python -m sluice.cli …`` with ``PYTHONPATH`` on that version's checkout (the baseline is a
``git worktree`` of ``--baseline-ref``, removed at the end). Events go in with
``EventClient.send_batch``; webhooks go to an HTTP/1.1 keep-alive receiver in this process
(asyncio, on a thread and event loop of its own), which records each request's
``webhook-id``, the event's message id and its arrival time. Before any timing, a warm-up
goes through the whole chain: the leg's processes are ready when its webhooks have arrived.

Phases, in this order, each in a workspace of its own:

1. throughput: ``--events`` "Signed Up" events at once (batches of ``--batch``), one webhook
   automation to ``/fast`` (204 at once). Triggers/s = events / (last webhook - first send);
   latency from the event's verdict (the outcome's ``decided_at``) to the webhook's arrival;
   CPU per trigger of the leg's processes, of the deliverers alone and of PostgreSQL's
   backends (``bench/cputime.py``);
2. steady rate: ``--rate`` events/s for ``--steady-s`` seconds, paced in batches of
   ``--steady-batch``: the same latency (it includes the time a batch's triggers take to go
   out), delivered/s and what the sender managed (sent/s). Delivered/s short of the rate
   with a low latency means the ingest lagged: the latency starts at the verdict;
3a. control: the same number of "Signed Up" events as in 1, each followed by an "Other
   Thing", whose automation goes to ``/fast-other`` (204 at once, like ``/fast``). The
   "Signed Up" triggers/s are measured as in 1 (events / (last ``/fast`` webhook - first
   send)); then every ``/fast-other`` webhook is waited for too, so that none is left over;
3b. isolation: as 3a, with the "Other Thing" replaced by "Slow Thing" (automation to
   ``/slow``, 204 after 2 s) and "Dead Thing" (to ``/dead``: read, never answered, so every
   attempt times out) in turn. Only the "Signed Up" webhooks are waited for (at most
   ``--isolation-timeout`` seconds). The isolation share is 3b's "Signed Up" triggers/s over
   3a's: the same events, the same ingest load, only the neighbours differ, so it says how
   well one automation is kept apart from a slow and a dead one. Its share of phase 1's rate
   is given too, but phase 1 ingests half as many events.

Duplicates are requests whose ``webhook-id`` came before (0 expected, except on ``/dead``,
where a repeat is a retry after a timeout).

Deployments (``--deployment``): ``compose``, an ingest worker (``--queues sluice.ingest
--concurrency 2``) and deliverers: the baseline's is one thread-pool worker on
``sluice.triggers`` (``--threads`` threads), the current code's ``--deliverers`` processes of
``sluice deliverer`` (default 1; the ingest worker gets ``--no-deliver`` when it has it, as
in docker-compose.yml), all of them in the deliverer CPU figure. ``--deliverers`` applies to
the current code only; while it has no ``sluice deliverer`` command, a thread-pool worker
delivers instead, with a warning. ``single``, one ``sluice worker --concurrency 2`` that
ingests and delivers; ``both``, one after the other. Before the warm-up, a leg waits until
each ``sluice deliverer`` listens for wake-ups (Redis publish/subscribe).

    python bench/triggers.py                                  # current code only, embedded
    python bench/triggers.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_triggers \\
        --redis-url redis://127.0.0.1:6379/13 --baseline-ref 8e43906
    python bench/triggers.py --baseline-ref 8e43906 --events 500 --steady-s 3 --deployment both
    python bench/triggers.py --baseline-ref 8e43906 --deliverers 2

With ``--database-url`` for PostgreSQL, the databases ``<name>_before`` and ``<name>_after``
are created on that server (through its ``postgres`` database) and dropped at the end; the
database named in the URL is not touched. Without it, each leg has a SQLite file in a
scratch directory. The Redis database given is emptied before each leg; without one, an
embedded Redis is started. Progress goes to stderr; the results to stdout: a readable
summary, then one JSON line. Child processes, the worktree and the databases are cleaned up
on the way out, on Ctrl-C and on SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import psycopg
import redis
from celery import Celery
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from sluice.actions import Action
from sluice.cli.embedded_redis import EmbeddedRedis
from sluice.producer import EventClient, keys
from sluice.producer.events import as_utc
from sluice.producer.workspace_ids import announce
from sluice.store.automations import add_automation
from sluice.store.engine import make_engine, normalise_url
from sluice.store.migrate import upgrade
from sluice.store.schema import outcomes
from sluice.store.workspaces import create_workspace

sys.path.insert(0, str(Path(__file__).parent))
from cputime import CLOCK_TICKS, measure, tagged_url, tree_ticks
from throughput import machine

SLOW_S = 2.0  # how long /slow takes to answer
NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024
WARM_UP_EVENTS = 20  # two batches of 10: each ingest pool process gets one
WARM_UP_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
POLL_S = 0.02
RAISING_SIGNALS = (signal.SIGINT, signal.SIGTERM)
IMPORT_CHECK = (
    "import os, sluice, sluice.worker\n"
    "print(os.path.realpath(sluice.__file__))\n"
    "print(os.path.realpath(sluice.worker.__file__))"
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the receiver ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    webhook_id: str | None
    message_id: str | None  # the JSON body's data.event.message_id


@dataclass(slots=True)
class PathLog:
    """Every request one path received: (webhook-id, message id, arrival), and what follows."""

    requests: list[tuple[str | None, str | None, float]] = field(default_factory=list)
    first_at: dict[str, float] = field(default_factory=dict)  # message id -> first arrival
    webhook_ids: set[str] = field(default_factory=set)
    duplicates: int = 0  # requests whose webhook-id came before

    def add(self, request: Request, at: float) -> None:
        self.requests.append((request.webhook_id, request.message_id, at))
        if request.webhook_id is not None:
            if request.webhook_id in self.webhook_ids:
                self.duplicates += 1
            self.webhook_ids.add(request.webhook_id)
        if request.message_id is not None:
            self.first_at.setdefault(request.message_id, at)

    def copy(self) -> PathLog:
        return PathLog(
            list(self.requests), dict(self.first_at), set(self.webhook_ids), self.duplicates
        )


def message_id_of(body: bytes) -> str | None:
    try:
        value = orjson.loads(body)["data"]["event"]["message_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The path (without a query) and the headers (lower-case names) of a request head."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request line: {request_line[:100]!r}")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"not a header line: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[1].split("?", 1)[0], headers


def dechunk(buffer: bytearray, at: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``at``: (body, end offset), or None while incomplete."""
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";", 1)[0], 16)
        at = line_end + 2
        if size == 0:  # then optional trailers, and an empty line
            end = buffer.find(b"\r\n\r\n", at - 2)
            return None if end < 0 else (bytes(body), end + 4)
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


def take_request(buffer: bytearray) -> Request | None:
    """The first complete request in ``buffer``, removed from it; None while incomplete.
    Raises ``ValueError`` for something that is not HTTP/1.x."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ValueError("request head too long")
        return None
    path, headers = parse_head(bytes(buffer[:head_end]))
    body_at = head_end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        framed = dechunk(buffer, body_at)
    else:
        end = body_at + int(headers.get("content-length", "0"))
        framed = None if len(buffer) < end else (bytes(buffer[body_at:end]), end)
    if framed is None:
        return None
    body, end = framed
    del buffer[:end]
    return Request(path, headers.get("webhook-id"), message_id_of(body))


def behaviour(path: str) -> str:
    """``slow`` or ``dead`` when that is the path's first segment, else ``fast`` (e.g.
    ``/fast-other``)."""
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    return first if first in ("slow", "dead") else "fast"


class Connection(asyncio.Protocol):
    """One keep-alive connection. Answers go out in the order of the requests (pipelining):
    one that waits holds back those after it, and one never answered holds them forever."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._last: asyncio.Task[None] | None = None  # the latest delayed answer
        self._stalled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._receiver.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._receiver.connections.discard(self)
        if self._last is not None:
            self._last.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while (request := take_request(self._buffer)) is not None:
                self._receiver.record(request, time.time())
                self._answer(behaviour(request.path))
        except ValueError:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _answer(self, kind: str) -> None:
        if self._stalled:
            return
        if kind == "dead":
            self._stalled = True
            return
        delay_s = SLOW_S if kind == "slow" else 0.0
        if delay_s == 0 and (self._last is None or self._last.done()):
            self._write()
            return
        loop = asyncio.get_running_loop()
        self._last = loop.create_task(self._answer_later(self._last, delay_s))

    async def _answer_later(self, before: asyncio.Task[None] | None, delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        if before is not None:
            await before
        self._write()

    def _write(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(NO_CONTENT)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (uvicorn[standard] brings it), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class Receiver:
    """The webhook receiver: a thread with its own event loop. A path's first segment says
    what it does (``behaviour``); its requests are recorded under the whole path."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()  # touched on the loop's thread only
        self.port = 0
        self._logs: dict[str, PathLog] = {}
        self._lock = threading.Lock()
        self._loop = new_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        if not self._ready.wait(10):
            raise SystemExit("the webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def record(self, request: Request, at: float) -> None:
        with self._lock:
            self._logs.setdefault(request.path, PathLog()).add(request, at)

    def arrived(self, path: str) -> int:
        """Distinct message ids received on ``path``."""
        with self._lock:
            found = self._logs.get(path)
            return 0 if found is None else len(found.first_at)

    def log(self, path: str) -> PathLog:
        with self._lock:
            found = self._logs.get(path)
            return PathLog() if found is None else found.copy()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            self._loop.create_server(lambda: Connection(self), "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for connection in list(self.connections):
                connection.close()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()


# --- code versions, services, processes -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    label: str  # "before" or "after"
    root: Path  # the checkout holding sluice/
    revision: str
    baseline: bool


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def code_versions(
    baseline_ref: str | None, scratch: Path, cleanup: contextlib.ExitStack
) -> list[Code]:
    """The baseline (a detached worktree, removed on the way out) if asked, then the
    current code (this file's checkout)."""
    repo = Path(git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel"))
    changed = "+changes" if git(repo, "status", "--porcelain") else ""
    current = Code("after", repo, git(repo, "rev-parse", "--short", "HEAD") + changed, False)
    if baseline_ref is None:
        return [current]
    revision = git(repo, "rev-parse", "--short", f"{baseline_ref}^{{commit}}")
    worktree = scratch / "baseline"
    git(repo, "worktree", "add", "--detach", str(worktree), revision)
    cleanup.callback(remove_worktree, repo, worktree)
    return [Code("before", worktree, revision, True), current]


def remove_worktree(repo: Path, worktree: Path) -> None:
    removed = subprocess.run(
        ["git", "-C", str(repo), "worktree", "remove", "--force", str(worktree)],
        capture_output=True,
        check=False,
    )
    if removed.returncode != 0:  # then its directory goes, and git forgets it
        shutil.rmtree(worktree, ignore_errors=True)
        git(repo, "worktree", "prune")


class Databases:
    """A fresh database per leg: on PostgreSQL ``<name>_<leg>``, created and dropped through
    the server's ``postgres`` database; otherwise a SQLite file in the scratch directory."""

    def __init__(self, base_url: str | None, scratch: Path) -> None:
        self._base = make_url(normalise_url(base_url)) if base_url else None
        self._scratch = scratch
        self._made: set[str] = set()

    @property
    def kind(self) -> str:
        return "sqlite" if self._base is None else self._base.get_backend_name()

    def fresh(self, deployment: str, leg: str) -> str:
        if self._base is None:
            return f"sqlite:///{self._scratch / f'{deployment}-{leg}.db'}"
        if self._base.get_backend_name() != "postgresql":
            raise SystemExit("--database-url: PostgreSQL only (or leave it out for SQLite)")
        name = f"{self._base.database or 'sluice_bench'}_{leg}"
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
        self._admin("CREATE DATABASE {}", name)
        self._made.add(name)
        return self._base.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in sorted(self._made):
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
        self._made.clear()

    def _admin(self, statement: str, name: str) -> None:
        assert self._base is not None
        conninfo = make_conninfo(
            host=self._base.host,
            port=self._base.port,
            user=self._base.username,
            password=self._base.password,
            dbname="postgres",
        )
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


@dataclass(frozen=True, slots=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    celery: bool  # answers Celery's ping


def start_child(
    name: str, command: list[str], env: dict[str, str], log: Path, celery: bool
) -> Child:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=log.parent,  # not a checkout: ``-m`` puts the working directory first
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own: stopped with all its children
        )
    return Child(name, process, log, celery)


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def check_alive(children: Sequence[Child]) -> None:
    for child in children:
        if child.process.poll() is not None:
            raise SystemExit(
                f"{child.name} exited with status {child.process.returncode}; "
                f"the end of its output:\n{tail(child.log)}"
            )


def signal_group(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


def stop_children(children: Sequence[Child]) -> None:
    """SIGTERM to each process group, a grace period, then SIGKILL to whatever is left."""
    for child in children:
        signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for child in children:
        signal_group(child, signal.SIGKILL)  # pool processes outliving their parent too
        child.process.wait()


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block (a clean-up) is over."""
    held = {signum: signal.signal(signum, signal.SIG_IGN) for signum in RAISING_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)


def exit_on_sigterm(signum: int, _frame: object) -> None:
    say("terminated; stopping the processes and cleaning up")
    raise SystemExit(128 + signum)  # the clean-ups of ``finally`` and ``with`` run


def leg_env(
    code: Code, redis_url: str, database_url: str, args: argparse.Namespace
) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(code.root),
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "true",
        "SLUICE_WEBHOOK_MAX_IN_FLIGHT": str(args.in_flight),
        "SLUICE_WEBHOOK_TIMEOUT_S": str(args.webhook_timeout_s),
    }


def imported_from(code: Code, env: dict[str, str], cwd: Path) -> str:
    """Where the leg's processes import ``sluice`` from; stops the run if not ``code.root``."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{code.label}: cannot import sluice:\n{done.stderr[-3000:]}")
    found = done.stdout.splitlines()
    root = code.root.resolve()
    if not all(Path(path).is_relative_to(root) for path in found):
        raise SystemExit(f"{code.label}: sluice imports from {found}, not from {root}")
    return found[0]


def cli_help(env: dict[str, str], cwd: Path, command: str) -> str | None:
    """``sluice <command> --help`` of the leg's code; None if there is no such command."""
    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli", command, "--help"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


SLUICE = [sys.executable, "-m", "sluice.cli"]


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    args: list[str]  # after ``python -m sluice.cli``
    celery: bool  # answers Celery's ping


def deployment_specs(
    deployment: str, own_deliverers: int, no_deliver: bool, threads: int
) -> tuple[list[Spec], str]:
    """The processes of a leg, and what delivers, in short. ``own_deliverers``: how many
    ``sluice deliverer`` processes (0: a thread-pool worker delivers). ``no_deliver``: the
    worker has ``--no-deliver`` (it would deliver too otherwise), given to the ingest worker
    beside them as docker-compose.yml does."""
    quiet = "--loglevel=WARNING"
    if deployment == "single":
        worker = ["worker", "--concurrency=2", "--hostname=single@%h", quiet]
        return [Spec("worker", worker, True)], "the worker itself"
    ingest = ["worker", "--queues=sluice.ingest", "--concurrency=2", "--hostname=ingest@%h", quiet]
    if own_deliverers:
        only_ingest = ["worker", "--no-deliver", *ingest[1:]] if no_deliver else ingest
        deliverers = [
            Spec(deliverer_name(i, own_deliverers), ["--log-level=WARNING", "deliverer"], False)
            for i in range(own_deliverers)
        ]
        what = "sluice deliverer" if own_deliverers == 1 else f"{own_deliverers} sluice deliverers"
        return [Spec("ingest", only_ingest, True), *deliverers], what
    pool = ["--pool=threads", f"--concurrency={threads}", "--hostname=deliverer@%h", quiet]
    deliverer = Spec("deliverer", ["worker", "--queues=sluice.triggers", *pool], True)
    return [Spec("ingest", ingest, True), deliverer], f"worker, {threads} threads"


def deliverer_name(index: int, count: int) -> str:
    """``deliverer``, or ``deliverer-1`` … ``deliverer-<count>`` when there are several."""
    return "deliverer" if count == 1 else f"deliverer-{index + 1}"


def is_deliverer(child: Child) -> bool:
    return child.name == "deliverer" or child.name.startswith("deliverer-")


def leg_specs(
    name: str, code: Code, deployment: str, env: dict[str, str], cwd: Path, args: argparse.Namespace
) -> tuple[list[Spec], str]:
    """``deployment_specs`` for a leg: compose's deliverers are ``sluice deliverer``
    processes when the code has that command (``--deliverers`` of them for the current
    code, one for the baseline), otherwise a thread-pool worker."""
    own_deliverers = (1 if code.baseline else args.deliverers) if deployment == "compose" else 0
    if own_deliverers and cli_help(env, cwd, "deliverer") is None:
        ignored = f" (--deliverers {args.deliverers} ignored)" if args.deliverers != 1 else ""
        say(
            f"[{name}] warning: no `sluice deliverer` in this code; "
            f"a thread-pool worker delivers{ignored}"
        )
        own_deliverers = 0
    no_deliver = bool(own_deliverers) and "--no-deliver" in (cli_help(env, cwd, "worker") or "")
    return deployment_specs(deployment, own_deliverers, no_deliver, args.threads)


def wait_for_celery(broker_url: str, children: Sequence[Child], timeout_s: float = 90) -> None:
    wanted = sum(1 for child in children if child.celery)
    app = Celery(broker=broker_url, set_as_current=False)
    deadline = time.monotonic() + timeout_s
    try:
        while len(app.control.ping(timeout=0.5)) < wanted:
            check_alive(children)
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not come up")
    finally:
        app.close()


def wait_for_deliverers(redis_url: str, children: Sequence[Child], timeout_s: float = 90) -> None:
    """Until the Redis server counts a wake-up listener for each ``sluice deliverer`` (the
    last thing one does before it claims). Channels are server-wide: listeners of another
    run on the same server count too, so this waits at most too little, never forever."""
    wanted = sum(1 for child in children if is_deliverer(child) and not child.celery)
    if not wanted:
        return
    channel = keys.trigger_wakeups()
    deadline = time.monotonic() + timeout_s
    with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
        while True:
            counts = cast(list[tuple[bytes, int]], client.pubsub_numsub(channel))
            if sum(count for _, count in counts) >= wanted:
                return
            check_alive(children)
            if time.monotonic() > deadline:
                raise SystemExit("the deliverers did not come up")
            time.sleep(0.1)


# --- phases ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


@dataclass(frozen=True, slots=True)
class Latency:
    """From the outcome's ``decided_at`` (the event accepted) to the webhook's arrival."""

    p50_ms: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        return cls(percentile(values, 0.50), percentile(values, 0.99))


@dataclass(frozen=True, slots=True)
class Burst:
    events: int
    delivered: int
    complete: bool
    seconds: float
    triggers_per_s: float
    latency: Latency
    duplicates: int
    cpu_us_per_trigger: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Steady:
    rate: float
    offered_per_s: float | None  # what the sender managed (short of ``rate``: it lagged)
    events: int
    delivered: int
    complete: bool
    delivered_per_s: float
    latency: Latency
    duplicates: int
    cpu_us_per_trigger: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Control:
    events: int  # "Signed Up" (as many "Other Thing" beside them)
    delivered: int
    complete: bool  # all of them arrived before --timeout
    seconds: float
    triggers_per_s: float
    duplicates: int
    other_received: int  # "Other Thing" webhooks, all waited for
    other_complete: bool
    other_duplicates: int


@dataclass(frozen=True, slots=True)
class Isolation:
    events: int  # "Signed Up" (as many others beside them)
    delivered: int
    complete: bool  # all of them arrived before --isolation-timeout
    seconds: float
    triggers_per_s: float
    share_of_control: float | None  # of 3a's triggers/s: the isolation share
    share_of_solo: float | None  # of phase 1's, which ingests half as many events
    duplicates: int
    slow_received: int
    slow_duplicates: int
    dead_requests: int
    dead_repeats: int  # a retry after a timeout is a repeat here


@dataclass(frozen=True, slots=True)
class LegResult:
    revision: str
    imported_from: str
    delivered_by: str
    processes: dict[str, str]
    throughput: Burst
    steady: Steady
    control: Control
    isolation: Isolation


@dataclass(slots=True)
class Leg:
    """What the phases of one leg share."""

    name: str  # e.g. compose-before
    args: argparse.Namespace
    receiver: Receiver
    redis_url: str
    database_url: str
    engine: Engine
    children: list[Child]

    def path(self, kind: str, phase: str) -> str:
        return f"/{kind}/{self.name}-{phase}"

    def workspace(self, phase: str, hooks: dict[str, str]) -> str:
        """A workspace with a webhook automation per event name (to the receiver's path)."""
        workspace_id = create_workspace(self.engine, f"bench-triggers-{phase}").workspace_id
        with redis.Redis.from_url(
            self.redis_url
        ) as known:  # known on Redis, as `sluice workspace create` does
            announce(known, [workspace_id])
        for event_name, path in hooks.items():
            add_automation(
                self.engine,
                workspace_id,
                event_name,
                Action.WEBHOOK,
                target=self.receiver.url(path),
                allow_private_webhooks=True,
            )
        return workspace_id

    def send(
        self, workspace_id: str, events: Sequence[dict[str, Any]], batch: int, rate: float = 0
    ) -> tuple[float, float]:
        """Send ``events`` in batches (paced at ``rate`` events/s if given); when the first
        and the last ``send_batch`` call started."""
        client = EventClient(workspace_id, broker_url=self.redis_url, batch_events=batch)
        started = last = time.time()
        try:
            for start in range(0, len(events), batch):
                if rate:
                    time.sleep(max(0.0, started + start / rate - time.time()))
                last = time.time()
                client.send_batch(events[start : start + batch])
        finally:
            client.close()
        return started, last

    def wait(self, path: str, count: int, timeout_s: float) -> bool:
        """Until ``count`` distinct events arrived on ``path``; False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.receiver.arrived(path) < count:
            check_alive(self.children)
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return True

    def latencies_ms(self, workspace_id: str, first_at: dict[str, float]) -> list[float]:
        query = select(outcomes.c.message_id, outcomes.c.decided_at).where(
            outcomes.c.workspace_id == workspace_id
        )
        with self.engine.connect() as conn:
            decided = {m: as_utc(t).timestamp() for m, t in conn.execute(query)}
        return [(at - decided[m]) * 1000 for m, at in first_at.items() if m in decided]

    @contextlib.contextmanager
    def cpu(self, spent: dict[str, float | None]) -> Iterator[None]:
        """Fills ``spent`` with CPU seconds of the leg's processes (and their children), of
        the deliverers alone (``compose``: all of them) and of PostgreSQL's backends over the
        block."""
        deliverer = [c.process.pid for c in self.children if is_deliverer(c)]
        deliverer_ticks = tree_ticks(deliverer)
        with measure([c.process.pid for c in self.children], self.database_url) as window:
            yield
        spent["processes"] = window.workers_s
        spent["deliverer"] = (
            (tree_ticks(deliverer) - deliverer_ticks) / CLOCK_TICKS if deliverer else None
        )
        spent["postgres"] = window.postgres_s
        spent["bench"] = window.bench_s


def event(name: str, user_id: str, n: int) -> dict[str, Any]:
    return {"kind": "custom", "name": name, "user_id": user_id, "properties": {"n": n}}


def events_named(name: str, count: int, prefix: str) -> list[dict[str, Any]]:
    return [event(name, f"{prefix}-{i}", i) for i in range(count)]


def per_trigger_us(spent: dict[str, float | None], triggers: int) -> dict[str, float | None]:
    return {
        part: None if seconds is None or not triggers else round(seconds * 1e6 / triggers, 1)
        for part, seconds in spent.items()
    }


def finished_at(log: PathLog, complete: bool) -> float:
    return max(log.first_at.values()) if complete and log.first_at else time.time()


def warm_up(leg: Leg) -> None:
    path = leg.path("fast", "warm-up")
    workspace_id = leg.workspace("warm-up", {"Signed Up": path})
    leg.send(workspace_id, events_named("Signed Up", WARM_UP_EVENTS, "warm"), 10)
    if not leg.wait(path, WARM_UP_EVENTS, WARM_UP_TIMEOUT_S):
        got = leg.receiver.arrived(path)
        raise SystemExit(f"{leg.name}: {got}/{WARM_UP_EVENTS} warm-up webhooks arrived")


def throughput_phase(leg: Leg) -> Burst:
    args = leg.args
    path = leg.path("fast", "throughput")
    workspace_id = leg.workspace("throughput", {"Signed Up": path})
    events = events_named("Signed Up", args.events, "solo")
    spent: dict[str, float | None] = {}
    with leg.cpu(spent):
        started, _ = leg.send(workspace_id, events, args.batch)
        complete = leg.wait(path, args.events, args.timeout)
    log = leg.receiver.log(path)
    seconds = finished_at(log, complete) - started
    return Burst(
        events=args.events,
        delivered=len(log.first_at),
        complete=complete,
        seconds=round(seconds, 2),
        triggers_per_s=round(len(log.first_at) / seconds, 1),
        latency=Latency.of(leg.latencies_ms(workspace_id, log.first_at)),
        duplicates=log.duplicates,
        cpu_us_per_trigger=per_trigger_us(spent, len(log.first_at)),
    )


def steady_phase(leg: Leg) -> Steady:
    args = leg.args
    path = leg.path("fast", "steady")
    workspace_id = leg.workspace("steady", {"Signed Up": path})
    count = max(1, round(args.rate * args.steady_s))
    events = events_named("Signed Up", count, "steady")
    spent: dict[str, float | None] = {}
    with leg.cpu(spent):
        started, last = leg.send(workspace_id, events, args.steady_batch, args.rate)
        complete = leg.wait(path, count, args.timeout)
    log = leg.receiver.log(path)
    seconds = finished_at(log, complete) - started
    offered_s, last_start = last - started, (count - 1) // args.steady_batch * args.steady_batch
    return Steady(
        rate=args.rate,
        offered_per_s=round(last_start / offered_s, 1) if offered_s else None,
        events=count,
        delivered=len(log.first_at),
        complete=complete,
        delivered_per_s=round(len(log.first_at) / seconds, 1),
        latency=Latency.of(leg.latencies_ms(workspace_id, log.first_at)),
        duplicates=log.duplicates,
        cpu_us_per_trigger=per_trigger_us(spent, len(log.first_at)),
    )


def interleaved(count: int, prefix: str, other: Callable[[int], str]) -> list[dict[str, Any]]:
    """``count`` "Signed Up", the i-th followed by an event named ``other(i)``."""
    made = []
    for i in range(count):
        made.append(event("Signed Up", f"{prefix}-{i}", i))
        made.append(event(other(i), f"{prefix}-other-{i}", i))
    return made


def share(rate: float, of: float) -> float | None:
    return round(rate / of, 3) if of else None


def control_phase(leg: Leg) -> Control:
    """3a: "Signed Up" beside "Other Thing", whose automation is as fast as its own."""
    args = leg.args
    fast, other = leg.path("fast", "control"), leg.path("fast-other", "control")
    workspace_id = leg.workspace("control", {"Signed Up": fast, "Other Thing": other})
    events = interleaved(args.events, "ctl", lambda _: "Other Thing")
    deadline = time.monotonic() + args.timeout
    started, _ = leg.send(workspace_id, events, args.batch)
    complete = leg.wait(fast, args.events, deadline - time.monotonic())
    fast_log = leg.receiver.log(fast)
    seconds = finished_at(fast_log, complete) - started  # before the wait for the others
    other_complete = leg.wait(other, args.events, deadline - time.monotonic())
    other_log = leg.receiver.log(other)
    return Control(
        events=args.events,
        delivered=len(fast_log.first_at),
        complete=complete,
        seconds=round(seconds, 2),
        triggers_per_s=round(len(fast_log.first_at) / seconds, 1),
        duplicates=fast_log.duplicates,
        other_received=len(other_log.first_at),
        other_complete=other_complete,
        other_duplicates=other_log.duplicates,
    )


def isolation_phase(leg: Leg, solo: Burst, control: Control) -> Isolation:
    """3b: "Signed Up" beside "Slow Thing" and "Dead Thing" in turn."""
    args = leg.args
    paths = {kind: leg.path(kind, "isolation") for kind in ("fast", "slow", "dead")}
    hooks = {"Signed Up": paths["fast"], "Slow Thing": paths["slow"], "Dead Thing": paths["dead"]}
    workspace_id = leg.workspace("isolation", hooks)
    events = interleaved(args.events, "iso", lambda i: "Dead Thing" if i % 2 else "Slow Thing")
    started, _ = leg.send(workspace_id, events, args.batch)
    complete = leg.wait(paths["fast"], args.events, args.isolation_timeout)
    fast, slow, dead = (leg.receiver.log(paths[kind]) for kind in ("fast", "slow", "dead"))
    seconds = finished_at(fast, complete) - started
    rate = len(fast.first_at) / seconds
    return Isolation(
        events=args.events,
        delivered=len(fast.first_at),
        complete=complete,
        seconds=round(seconds, 2),
        triggers_per_s=round(rate, 1),
        share_of_control=share(rate, control.triggers_per_s),
        share_of_solo=share(rate, solo.triggers_per_s),
        duplicates=fast.duplicates,
        slow_received=len(slow.first_at),
        slow_duplicates=slow.duplicates,
        dead_requests=len(dead.requests),
        dead_repeats=dead.duplicates,
    )


# --- a leg ----------------------------------------------------------------------------------


def run_leg(
    code: Code,
    deployment: str,
    args: argparse.Namespace,
    receiver: Receiver,
    redis_url: str,
    databases: Databases,
    scratch: Path,
) -> LegResult:
    name = f"{deployment}-{code.label}"
    database_url = databases.fresh(deployment, code.label)
    with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
        client.flushdb()
    engine = make_engine(tagged_url(database_url))  # left out of the backends' CPU
    upgrade(engine)  # the current code's migrations, for both legs
    env = leg_env(code, redis_url, database_url, args)
    logs = scratch / name
    logs.mkdir()
    source = imported_from(code, env, logs)
    say(f"[{name}] {code.revision}: sluice from {source}")
    specs, delivered_by = leg_specs(name, code, deployment, env, logs, args)
    processes = {spec.name: " ".join(spec.args) for spec in specs}
    children: list[Child] = []
    try:
        for spec in specs:
            command = [*SLUICE, *spec.args]
            children.append(
                start_child(spec.name, command, env, logs / f"{spec.name}.log", spec.celery)
            )
        leg = Leg(name, args, receiver, redis_url, database_url, engine, children)
        wait_for_celery(redis_url, children)
        wait_for_deliverers(redis_url, children)
        warm_up(leg)
        say(f"[{name}] ready: {'; '.join(processes.values())}")
        solo = throughput_phase(leg)
        say(f"[{name}] throughput: {solo.triggers_per_s:,.0f} triggers/s")
        steady = steady_phase(leg)
        say(f"[{name}] steady: {steady.delivered_per_s:,.0f}/s, p99 {steady.latency.p99_ms} ms")
        control = control_phase(leg)
        say(f"[{name}] {control_sentence(control)}")
        isolation = isolation_phase(leg, solo, control)
        say(f"[{name}] {isolation_sentence(isolation)}")
    finally:
        with uninterrupted():
            stop_children(children)
            engine.dispose()
    return LegResult(
        code.revision, source, delivered_by, processes, solo, steady, control, isolation
    )


def percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def control_sentence(result: Control) -> str:
    cut = "" if result.complete else f", cut off with {result.delivered}/{result.events}"
    other = "" if result.other_complete else f"; only {result.other_received} of the others"
    return (
        f"3a control: fast automation at {result.triggers_per_s:,.0f} triggers/s "
        f"beside a fast one{cut}{other}"
    )


def isolation_sentence(result: Isolation) -> str:
    cut = "" if result.complete else f" (cut off with {result.delivered}/{result.events})"
    return (
        f"3b isolation: fast automation beside a {SLOW_S:g} s and a dead endpoint at "
        f"{percent(result.share_of_control)} of its rate beside a fast one "
        f"({percent(result.share_of_solo)} of its solo rate){cut}"
    )


# --- the report -----------------------------------------------------------------------------

Getter = Callable[[LegResult], float | str | None]


def duplicates_of(result: LegResult) -> int:
    phases = (result.throughput, result.steady, result.control, result.isolation)
    others = result.control.other_duplicates + result.isolation.slow_duplicates
    return sum(phase.duplicates for phase in phases) + others


def rows(args: argparse.Namespace) -> list[tuple[str, Getter, str]]:
    """(label, value of a leg, format); a format ending in ``%`` is a share."""
    return [
        ("code", lambda r: r.revision, "s"),
        ("delivered by", lambda r: r.delivered_by, "s"),
        ("throughput: triggers/s", lambda r: r.throughput.triggers_per_s, ",.0f"),
        ("  accepted → received p50, ms", lambda r: r.throughput.latency.p50_ms, ",.0f"),
        ("  accepted → received p99, ms", lambda r: r.throughput.latency.p99_ms, ",.0f"),
        (f"steady {args.rate:g}/s: delivered/s", lambda r: r.steady.delivered_per_s, ",.0f"),
        ("  sent/s by the bench", lambda r: r.steady.offered_per_s, ",.0f"),
        ("  accepted → received p50, ms", lambda r: r.steady.latency.p50_ms, ",.0f"),
        ("  accepted → received p99, ms", lambda r: r.steady.latency.p99_ms, ",.0f"),
        (
            "3a control: fast triggers/s, a fast one beside",
            lambda r: r.control.triggers_per_s,
            ",.0f",
        ),
        (
            f"3b isolation: fast triggers/s, a {SLOW_S:g} s and a dead one beside",
            lambda r: r.isolation.triggers_per_s,
            ",.0f",
        ),
        (
            f"  fast automation beside a {SLOW_S:g} s and a dead endpoint, vs beside a fast one",
            lambda r: r.isolation.share_of_control,
            ".0%",
        ),
        (
            "  vs alone (phase 1, half the events)",
            lambda r: r.isolation.share_of_solo,
            ".0%",
        ),
        ("duplicate webhooks", duplicates_of, "d"),
        ("CPU µs/trigger, processes", cpu_of("processes"), ",.0f"),
        ("CPU µs/trigger, deliverer", cpu_of("deliverer"), ",.0f"),
        ("CPU µs/trigger, PostgreSQL", cpu_of("postgres"), ",.0f"),
    ]


def cpu_of(part: str) -> Getter:
    """Phase 1's CPU per trigger of one part."""
    return lambda result: result.throughput.cpu_us_per_trigger.get(part)


def cell(value: float | str | None, fmt: str) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else format(value, fmt)


def ratio(after: float | str | None, before: float | str | None) -> float | None:
    if not isinstance(after, int | float) or not isinstance(before, int | float) or not before:
        return None
    return float(f"{after / before:.3g}")


def header(args: argparse.Namespace) -> str:
    baseline = (
        f"; the baseline's: one thread-pool worker, {args.threads} threads"
        if args.baseline_ref
        else ""
    )
    return (
        f"{args.events:,} events a burst (phases 1, 3a, 3b), steady {args.rate:g}/s for "
        f"{args.steady_s:g} s; --deliverers {args.deliverers} (current code, compose"
        f"{baseline})"
    )


def summary(args: argparse.Namespace, results: dict[str, dict[str, LegResult]]) -> str:
    lines = [header(args)]
    table = rows(args)
    width = max(len(label) for label, _, _ in table) + 2
    for deployment, legs in results.items():
        before, after = legs.get("before"), legs.get("after")
        lines.append(f"{deployment}:")
        lines.append(f"  {'':{width}}{'before':>22}{'after':>22}{'after/before':>14}")
        for label, value, fmt in table:
            old = value(before) if before else None
            new = value(after) if after else None
            times = ratio(new, old)
            shown = "" if times is None else f"{times:.3g}x"
            lines.append(f"  {label:{width}}{cell(old, fmt):>22}{cell(new, fmt):>22}{shown:>14}")
        for label, leg in legs.items():
            lines.append(f"  {label}: {control_sentence(leg.control)}")
            lines.append(f"  {label}: {isolation_sentence(leg.isolation)}")
        lines.append("  (latency and CPU: lower is better; the CPU rows are phase 1's)")
    return "\n".join(lines)


def ratios(legs: dict[str, LegResult]) -> dict[str, float | None] | None:
    before, after = legs.get("before"), legs.get("after")
    if before is None or after is None:
        return None
    return {
        "triggers_per_s": ratio(after.throughput.triggers_per_s, before.throughput.triggers_per_s),
        "steady_delivered_per_s": ratio(
            after.steady.delivered_per_s, before.steady.delivered_per_s
        ),
        "steady_p50_ms": ratio(after.steady.latency.p50_ms, before.steady.latency.p50_ms),
        "steady_p99_ms": ratio(after.steady.latency.p99_ms, before.steady.latency.p99_ms),
        "control_triggers_per_s": ratio(
            after.control.triggers_per_s, before.control.triggers_per_s
        ),
        "isolation_share": ratio(
            after.isolation.share_of_control, before.isolation.share_of_control
        ),
        "isolation_share_of_solo": ratio(
            after.isolation.share_of_solo, before.isolation.share_of_solo
        ),
    }


# --- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--baseline-ref", help="git revision to compare with (default: none)")
    parser.add_argument("--deployment", choices=["compose", "single", "both"], default="compose")
    parser.add_argument("--events", type=int, default=4000, help="phases 1, 3a and 3b")
    parser.add_argument("--batch", type=int, default=100, help="events per send_batch call")
    parser.add_argument("--rate", type=float, default=500, help="phase 2: events/s")
    parser.add_argument("--steady-s", type=float, default=10, help="phase 2: seconds")
    parser.add_argument("--steady-batch", type=int, default=50, help="phase 2: batch size")
    parser.add_argument("--in-flight", type=int, default=64, help="SLUICE_WEBHOOK_MAX_IN_FLIGHT")
    parser.add_argument(
        "--webhook-timeout-s", type=float, default=5, help="SLUICE_WEBHOOK_TIMEOUT_S"
    )
    parser.add_argument("--threads", type=int, default=16, help="thread-pool deliverer's threads")
    parser.add_argument(
        "--deliverers",
        type=int,
        default=1,
        help="`sluice deliverer` processes of the current code (compose); the baseline: one",
    )
    parser.add_argument("--redis-url", help="emptied before each leg; default: embedded Redis")
    parser.add_argument("--database-url", help="PostgreSQL server (see above); default: SQLite")
    parser.add_argument("--timeout", type=float, default=600, help="phases 1, 2, 3a: seconds")
    parser.add_argument("--isolation-timeout", type=float, default=120, help="phase 3b, seconds")
    args = parser.parse_args()
    if args.deliverers < 1:
        parser.error("--deliverers: at least 1")
    return args


def run_all(args: argparse.Namespace) -> tuple[dict[str, dict[str, LegResult]], str]:
    """Every leg, by deployment and code label; and the kind of database."""
    deployments = ["compose", "single"] if args.deployment == "both" else [args.deployment]
    results: dict[str, dict[str, LegResult]] = {}
    with contextlib.ExitStack() as cleanup:
        scratch = Path(tempfile.mkdtemp(prefix="sluice-bench-triggers-"))
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        redis_url = args.redis_url
        if redis_url is None:
            embedded = EmbeddedRedis(scratch / "redis").start()
            cleanup.callback(embedded.stop)
            redis_url = embedded.url
        databases = Databases(args.database_url, scratch)
        cleanup.callback(databases.drop_all)
        receiver = Receiver().start()
        cleanup.callback(receiver.stop)
        codes = code_versions(args.baseline_ref, scratch, cleanup)
        if args.baseline_ref or args.deliverers != 1 or "single" in deployments:
            say(
                f"--deliverers {args.deliverers}: the current code's compose leg only; the "
                f"baseline's deliverer stays one thread-pool worker ({args.threads} threads), "
                "and `single` delivers in its worker"
            )
        cleanup.enter_context(uninterrupted_exit())
        for deployment in deployments:
            results[deployment] = {
                code.label: run_leg(code, deployment, args, receiver, redis_url, databases, scratch)
                for code in codes
            }
    return results, databases.kind


def as_json(
    args: argparse.Namespace, results: dict[str, dict[str, LegResult]], database: str
) -> str:
    return json.dumps(
        {
            "bench": "triggers_before_after",
            "database": database,
            "redis": "embedded" if args.redis_url is None else "given",
            "deployment": args.deployment,
            "events": args.events,
            "batch": args.batch,
            "rate": args.rate,
            "steady_s": args.steady_s,
            "steady_batch": args.steady_batch,
            "in_flight": args.in_flight,
            "webhook_timeout_s": args.webhook_timeout_s,
            "threads": args.threads,
            "deliverers": args.deliverers,
            "baseline_ref": args.baseline_ref,
            "results": {
                deployment: {
                    **{label: asdict(leg) for label, leg in legs.items()},
                    "after_over_before": ratios(legs),
                }
                for deployment, legs in results.items()
            },
            "machine": machine(),
            "command": " ".join(sys.argv),
        }
    )


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        results, database = run_all(args)
    except KeyboardInterrupt:
        say("interrupted; processes stopped, databases and worktree removed")
        sys.exit(130)
    print(summary(args, results))
    print(as_json(args, results, database))


@contextlib.contextmanager
def uninterrupted_exit() -> Iterator[None]:
    """Entered last, left first: the clean-ups after it run with Ctrl-C held."""
    try:
        yield
    finally:
        for signum in RAISING_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


if __name__ == "__main__":
    main()
