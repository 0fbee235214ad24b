"""Health checks the probes and ``sluice check`` share (docs/operations.md).

- ``Readiness``: can this process do its work now? Redis answers, the broker takes a
  connection, the database answers ``SELECT 1`` and its schema is at this release's newest
  Alembic revision. Each part runs on a thread of its own with a short timeout, all at once.
  ``check`` answers every part (``/readyz``); ``health`` the same Redis and database parts
  in the older shape of ``/healthz``.
- ``worker_problem``: is the worker node of this host consuming ``sluice.ingest``?
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

import redis
from celery import Celery
from kombu.connection import Connection
from sqlalchemy import Column, Engine, MetaData, String, Table, inspect, select
from sqlalchemy.engine import make_url

from sluice.producer.transport import broker_transport_options, is_redis_url
from sluice.settings import Settings
from sluice.store.engine import make_engine, normalise_url

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 1.5
OK = "ok"
PARTS = ("redis", "broker", "database", "schema")
SCHEMA_PROBLEM = "schema: "
VERSION_TABLE = "alembic_version"  # where Alembic keeps the revision a database is at
version_table = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)))


def short_reason(exc: BaseException) -> str:
    """The error class and the first line of its message, at most 120 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason[:120]


def schema_heads() -> tuple[str, ...]:
    """The newest revision(s) of this release's migrations."""
    from alembic.script import ScriptDirectory  # imported here: it logs on import

    from sluice.store.migrate import alembic_config

    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def database_engine(url: str, timeout_s: float) -> Engine:
    """An engine for probing: on PostgreSQL, connecting gives up after ``timeout_s``."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        seconds = str(max(1, round(timeout_s)))
        url = parsed.update_query_dict({"connect_timeout": seconds}).render_as_string(
            hide_password=False
        )
    return make_engine(url)


def schema_problem(engine: Engine, heads: tuple[str, ...]) -> str | None:
    """Why the schema is not this release's, or None. Raises when the database does not
    answer (the caller reports that as the database's problem)."""
    with engine.connect() as conn:
        conn.execute(select(1))
        migrated = inspect(conn).has_table(VERSION_TABLE)
        current = (
            tuple(sorted(conn.scalars(select(version_table.c.version_num)))) if migrated else ()
        )
    if current == heads or (current and not set(current) & known_revisions()):
        # A revision this release does not know was written by a newer release (a rolling
        # upgrade migrates first): its migrations only add, so this release still works.
        return None
    if not current:
        return "not migrated (run `sluice migrate`)"
    return f"at revision {', '.join(current)}, this release needs {', '.join(heads)}"


@cache
def known_revisions() -> frozenset[str]:
    """Every revision of this release's migrations."""
    from alembic.script import ScriptDirectory

    from sluice.store.migrate import alembic_config

    directory = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in directory.walk_revisions())


HEALTH_PARTS = ("redis", "database")  # what /healthz answers for
STILL_RUNNING = "timed out (the previous check has not finished)"


@dataclass(frozen=True)
class Finding:
    """One part's answer: ``ok`` or a short reason, and the class of the error when the
    check raised or timed out (what ``/healthz`` shows)."""

    reason: str
    error: str | None = None

    @classmethod
    def of(cls, exc: BaseException) -> Finding:
        return cls(short_reason(exc), type(exc).__name__)

    @property
    def public(self) -> str:
        """The answer for anyone who asks over HTTP: an error's class, never its message
        (which names hosts and ports); the reasons Sluice words itself (a schema behind, a
        timeout) as they are."""
        if self.error is None or self.error == TimeoutError.__name__:
            return self.reason
        return f"unavailable: {self.error}"


@dataclass
class _Part:
    """One check, run on its own thread. A check still running when asked again is not
    started twice (a hung connection holds one thread, not one per probe): the new caller
    waits for the same run."""

    check: Callable[[], str | None]
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: Future[Finding] | None = None

    def start(self, threads: ThreadPoolExecutor) -> tuple[Future[Finding], bool]:
        """The run under way, or a new one; and whether it is new."""
        with self.lock:
            if self.running is not None and not self.running.done():
                return self.running, False
            self.running = threads.submit(self._run)
            return self.running, True

    def _run(self) -> Finding:
        try:
            problem = self.check()
        except Exception as exc:
            return Finding.of(exc)
        return Finding(OK if problem is None else problem)


class Readiness:
    """The readiness checks of one process, with connections of their own (short
    timeouts, apart from those that serve traffic). ``close`` releases them."""

    def __init__(self, settings: Settings, *, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._heads = schema_heads()
        self._redis = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        self._broker_url = settings.broker_url
        self._broker_redis = (
            redis.Redis.from_url(
                settings.broker_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
            )
            if is_redis_url(settings.broker_url)
            else None
        )
        self._engine = database_engine(settings.database_url, timeout_s)
        self._parts = {
            "redis": _Part(self._ping_redis),
            "broker": _Part(self._broker),
            "database": _Part(self._database),
        }
        self._threads = ThreadPoolExecutor(len(self._parts), thread_name_prefix="sluice-ready")
        self._logged: dict[str, str] = {}  # each part's last reason in the log

    async def check(self, *, detail: bool = True) -> dict[str, str]:
        """``ok`` or a short reason for each part (redis, broker, database, schema). Without
        ``detail`` (``/readyz``) an error is named by its class only, and its message goes
        to the log instead, once each time it changes."""
        findings = await self._findings(list(self._parts))
        if not detail:
            self._log_changes(findings)
        results = {
            name: finding.reason if detail else finding.public for name, finding in findings.items()
        }
        database = results.pop("database")
        if database.startswith(SCHEMA_PROBLEM):  # the database answered; its schema is off
            results["database"], results["schema"] = OK, database.removeprefix(SCHEMA_PROBLEM)
        else:
            results["database"] = database
            results["schema"] = OK if database == OK else "not checked: no database"
        return {name: results[name] for name in PARTS}

    async def health(self) -> dict[str, str]:
        """``ok`` or ``error: <its class>`` for Redis and for the database (answering, its
        schema aside): the parts ``check`` runs, in the shape of ``/healthz``."""
        findings = await self._findings(list(HEALTH_PARTS))
        return {
            name: OK if finding.error is None else f"error: {finding.error}"
            for name, finding in findings.items()
        }

    def _log_changes(self, findings: dict[str, Finding]) -> None:
        for name, finding in findings.items():
            if self._logged.get(name, OK) != finding.reason:
                if finding.reason == OK:
                    log.info("readiness: %s is ok again", name)
                else:
                    log.warning("readiness: %s: %s", name, finding.reason)
            self._logged[name] = finding.reason

    def check_now(self) -> dict[str, str]:
        """``check`` from code without an event loop (the command line)."""
        return asyncio.run(self.check())

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._redis.close()
        if self._broker_redis is not None:
            self._broker_redis.close()
        self._engine.dispose()

    async def _findings(self, names: list[str]) -> dict[str, Finding]:
        """Each named part's finding, the parts run at once (or joined, if under way)."""
        runs = [self._parts[name].start(self._threads) for name in names]
        done = await asyncio.gather(
            *(asyncio.wait_for(asyncio.wrap_future(run), self.timeout_s + 0.5) for run, _ in runs),
            return_exceptions=True,
        )
        findings: dict[str, Finding] = {}
        for name, (_run, new), result in zip(names, runs, done, strict=True):
            if isinstance(result, TimeoutError):
                reason = f"timed out after {self.timeout_s:g} s" if new else STILL_RUNNING
                findings[name] = Finding(reason, TimeoutError.__name__)
            elif isinstance(result, BaseException):
                findings[name] = Finding.of(result)
            else:
                findings[name] = result
        return findings

    def _ping_redis(self) -> None:
        self._redis.ping()

    def _broker(self) -> None:
        if self._broker_redis is not None:
            self._broker_redis.ping()
            return
        with Connection(self._broker_url, connect_timeout=self.timeout_s) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=self.timeout_s
            )

    def _database(self) -> str | None:
        problem = schema_problem(self._engine, self._heads)
        return None if problem is None else SCHEMA_PROBLEM + problem


def worker_problem(app: Celery, node: str, queue: str, timeout_s: float) -> str | None:
    """Why the worker ``node`` is not consuming ``queue``, or None.

    One remote-control request (``active_queues``) addressed to the node travels through the
    broker; the node answers from its consumer's event loop, over the connection it takes
    tasks from, and its answer lists the queues its task consumer holds. A worker whose
    consumer stalled (a broker reconnect gone wrong) or lost the queue does not pass,
    where a process check would."""
    try:
        replies = app.control.inspect(destination=[node], timeout=timeout_s).active_queues()
    except Exception as exc:
        return f"the broker does not answer: {short_reason(exc)}"
    if not replies or node not in replies:
        return f"{node} did not answer within {timeout_s:g} s"
    consumed = sorted(q.get("name", "") for q in replies[node] or [])
    if queue not in consumed:
        return f"{node} does not consume {queue} (it consumes: {', '.join(consumed) or 'nothing'})"
    return None


def control_app(settings: Settings, timeout_s: float) -> Celery:
    """A Celery app for remote control over the settings' broker, giving up on an
    unreachable broker within about ``timeout_s`` (the workers' app retries forever)."""
    app = Celery("sluice-check", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_transport_options(timeout_s, settings.visibility_timeout_s),
        broker_connection_timeout=timeout_s,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
    )
    return app
