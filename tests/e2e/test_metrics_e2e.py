"""``GET /metrics`` with real processes: a gateway, two workers (one of them restarted
half-way) and a deliverer, over a Redis database and a database of their own, so that every
count on the page is this test's. A known sequence of events goes through the gateway (and
a few straight onto the queue); the page, parsed with prometheus_client's parser, must count
exactly that, and agree with the database. The Grafana dashboard must plot every metric the
page shows, and only those."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from sluice.actions import Action
from sluice.cli.embedded_redis import free_port
from sluice.producer.wire import INGEST_QUEUE, INGEST_TASK, SERIALIZER, register_serializer
from sluice.store.automations import add_automation
from sluice.store.engine import make_engine, normalise_url
from sluice.store.schema import outcomes, trigger_deliveries
from sluice.store.workspaces import NewWorkspace, create_workspace
from tests.conftest import CRASH_DB_OFFSET, STACK_DELIVERY_SETTINGS, make_known, sluice_env
from tests.processes import (
    DELIVERY_WORKER_COMMAND,
    GATEWAY_COMMAND,
    MIGRATE_COMMAND,
    WORKER_COMMAND,
    SluiceProcess,
    with_option,
)
from tests.receiver import Receiver, Reply, running_receiver
from tests.services import redis_db_of, service_missing, with_redis_db
from tests.unchecked import send_unchecked

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "sluice.json"
TASK_QUEUE = "metrics.tasks"
BOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Cluster:
    redis_url: str
    gateway_url: str
    engine: Engine
    workspace: NewWorkspace
    receiver: Receiver
    env: dict[str, str]
    logs: Path

    def worker(self, name: str) -> SluiceProcess:
        command = [*WORKER_COMMAND, "--hostname", f"{name}@%h"]
        return SluiceProcess(command, self.env, self.logs / f"{name}.log").start()

    def scrape(self) -> tuple[set[str], Samples]:
        answer = httpx.get(f"{self.gateway_url}/metrics", timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain; version=")
        families = list(text_string_to_metric_families(answer.text))
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in families
            for sample in family.samples
        }
        return {family.name for family in families}, samples


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def own_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database no other test's deliverer reads (they would take this test's triggers)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('metrics-db') / 'sluice.db'}"
        return
    configured = os.environ.get("SLUICE_DATABASE_URL", "")
    if not configured.startswith("postgres"):
        service_missing("PostgreSQL: SLUICE_DATABASE_URL is not a postgresql:// URL")
    server = make_url(normalise_url(configured))
    name = f"sluice_metrics_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def cluster(
    redis_url: str, own_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    url = with_redis_db(redis_url, redis_db_of(redis_url) + CRASH_DB_OFFSET)
    redis.Redis.from_url(url).flushdb()
    logs = tmp_path_factory.mktemp("metrics-logs")
    env = sluice_env(url, own_database, **STACK_DELIVERY_SETTINGS)
    SluiceProcess(MIGRATE_COMMAND, env, logs / "migrate.log").run_to_completion()
    engine = make_engine(own_database)
    port = free_port()
    command = with_option(with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port))
    gateway = SluiceProcess(command, env, logs / "gateway.log").start()
    deliverer = SluiceProcess(DELIVERY_WORKER_COMMAND, env, logs / "deliverer.log").start()
    with running_receiver() as receiver:
        try:
            gateway.wait_for_http(f"http://127.0.0.1:{port}/metrics")
            deliverer.wait_for_log("deliverer ready")
            workspace = create_workspace(engine, f"metrics-{uuid.uuid4().hex[:8]}")
            make_known(url, workspace.workspace_id)
            yield Cluster(url, f"http://127.0.0.1:{port}", engine, workspace, receiver, env, logs)
        finally:
            gateway.stop()
            deliverer.stop()
            engine.dispose()


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    """Poll ``check`` until it returns something truthy (the counters of the gateways
    reach Redis about once a second)."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)
    return found


def labelled(samples: Samples, name: str, *keys: str) -> Counter[tuple[str, ...]]:
    """The samples called ``name``, by the values of ``keys`` (summed over other labels)."""
    found: Counter[tuple[str, ...]] = Counter()
    for (sample, labels), value in samples.items():
        if sample == name:
            values = dict(labels)
            found[tuple(values.get(key, "") for key in keys)] += int(value)
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Sender:
    """Sends events and remembers what each must end as, and the requests it made."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = httpx.Client(
            base_url=cluster.gateway_url, auth=(cluster.workspace.write_key, ""), timeout=10
        )
        self.expected: Counter[tuple[str, str, str]] = Counter()  # (status, reason, source)
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (route, method, status)
        self.message_ids: dict[str, list[str]] = {}  # by workspace

    def track(self, event: str, expect: tuple[str, str], **fields: Any) -> None:
        answer = self.http.post("/v1/track", json={"userId": "u1", "event": event, **fields})
        self.requests[("/v1/track", "POST", str(answer.status_code))] += 1
        assert answer.status_code == 200, answer.text
        self._expect(
            self.cluster.workspace.workspace_id, answer.json()["message_id"], expect, "native"
        )

    def bento(self, count: int) -> None:
        ws = self.cluster.workspace.workspace_id
        events = [{"type": "$viewed", "email": f"b{i}@example.com"} for i in range(count)]
        answer = self.http.post(
            f"/compat/bento/api/v1/batch/events?site_uuid={ws}", json={"events": events}
        )
        route = "/compat/bento/api/v1/batch/events"
        self.requests[(route, "POST", str(answer.status_code))] += 1
        assert answer.status_code == 200, answer.text
        for message_id in answer.json()["message_ids"]:
            self._expect(ws, message_id, ("accepted", ""), "bento")

    def refused(self) -> None:
        answer = httpx.post(
            f"{self.cluster.gateway_url}/v1/track",
            json={"userId": "u", "event": "E"},
            auth=("not-a-key", ""),
        )
        assert answer.status_code == 401
        self.requests[("/v1/track", "POST", "401")] += 1
        answer = self.http.get("/no/such/route")
        assert answer.status_code == 404
        self.requests[("unmatched", "GET", "404")] += 1

    def unknown_workspace(self) -> None:
        message_id = send_unchecked(
            self.cluster.redis_url,
            "no-such-workspace",
            {"kind": "custom", "name": "Orphan", "user_id": "u"},
        )
        self._expect("no-such-workspace", message_id, ("rejected", "invalid"), "client")

    def raw(self) -> None:
        """An event that does not validate (source unknown), and a poison batch."""
        ws = self.cluster.workspace.workspace_id
        bad = {"workspace_id": ws, "message_id": f"bad-{uuid.uuid4().hex[:8]}", "kind": "teleport"}
        register_serializer()
        app = Celery(broker=self.cluster.redis_url, set_as_current=False)
        for envelope in (
            {"v": 1, "batch_id": f"raw-{uuid.uuid4().hex[:8]}", "events": [bad]},
            {"v": 99, "batch_id": f"poison-{uuid.uuid4().hex[:8]}", "events": [{}]},
        ):
            app.send_task(INGEST_TASK, args=[envelope], queue=INGEST_QUEUE, serializer=SERIALIZER)
        app.close()
        self._expect(ws, bad["message_id"], ("rejected", "invalid"), "unknown")

    def _expect(self, ws: str, message_id: str, verdict: tuple[str, str], source: str) -> None:
        self.message_ids.setdefault(ws, []).append(message_id)
        self.expected[(*verdict, source)] += 1

    def wait_for_outcomes(self) -> None:
        def decided() -> bool:
            with self.cluster.engine.connect() as conn:
                count = conn.execute(select(func.count()).select_from(outcomes)).scalar_one()
            return count == sum(len(ids) for ids in self.message_ids.values())

        wait_until(decided, "every event's outcome", timeout_s=60)


def phase(sender: Sender, order_id: str, *, first: bool) -> None:
    for i in range(8):  # one batch each: they spread over the workers' processes
        sender.track("Signed Up", ("accepted", ""), properties={"n": i})
    sender.track("Upgraded", ("accepted", ""))  # a task automation: one message on its queue
    sender.track(
        "Order Completed",
        ("accepted", "") if first else ("discarded", "duplicate_order"),
        properties={"order_id": order_id},
    )
    sender.track(
        "Order Completed", ("discarded", "duplicate_order"), properties={"order_id": order_id}
    )
    sender.track("Viewed", ("discarded", "bot"), context={"userAgent": BOT_AGENT})
    sender.bento(3)


def test_metrics_count_every_decision_across_two_workers_and_a_restart(cluster: Cluster) -> None:
    ws = cluster.workspace.workspace_id
    hook = cluster.receiver.script("/hook", [Reply(204)])
    add_automation(
        cluster.engine, ws, "Signed Up", Action.WEBHOOK, target=hook, allow_private_webhooks=True
    )
    add_automation(
        cluster.engine, ws, "Upgraded", Action.TASK, target="app.upgraded", queue=TASK_QUEUE
    )
    sender = Sender(cluster)
    first, second = cluster.worker("metrics1"), cluster.worker("metrics2")
    replacement: SluiceProcess | None = None
    try:
        first.wait_for_log(" ready.")
        second.wait_for_log(" ready.")
        phase(sender, "o-1", first=True)
        sender.refused()
        sender.unknown_workspace()
        sender.raw()
        sender.wait_for_outcomes()
        busy = [w for w in (first, second) if "succeeded" in w.log_text()]
        assert len(busy) == 2, "the batches did not spread over both workers"

        second.stop()  # a restart: the counts are in Redis, not in the process
        replacement = cluster.worker("metrics3")
        replacement.wait_for_log(" ready.")
        phase(sender, "o-1", first=False)
        sender.wait_for_outcomes()
    finally:
        sender.http.close()
        for worker in (first, second, replacement):
            if worker is not None:
                worker.stop()

    deliveries = 16 + 2  # each Signed Up a webhook, each Upgraded a task
    cluster.receiver.wait_for("/hook", 16)

    def settled() -> bool:
        with cluster.engine.connect() as conn:
            statuses: dict[str, int] = dict(
                conn.execute(
                    select(trigger_deliveries.c.status, func.count()).group_by(
                        trigger_deliveries.c.status
                    )
                ).all()
            )
        return statuses == {"delivered": deliveries}

    wait_until(settled, "every trigger delivered")

    def counted() -> Samples | None:
        _, samples = cluster.scrape()
        requests = labelled(samples, "sluice_http_requests_total", "route", "method", "status")
        triggers = labelled(samples, "sluice_triggers_total", "status")
        done = all(requests[key] == n for key, n in sender.requests.items())
        return samples if done and triggers[("delivered",)] == deliveries else None

    samples = wait_until(counted, "the gateway's request counts and the triggers")
    events = labelled(samples, "sluice_events_total", "status", "reason", "source")
    assert events == sender.expected
    with cluster.engine.connect() as conn:
        rows = conn.execute(
            select(outcomes.c.status, outcomes.c.reason, func.count()).group_by(
                outcomes.c.status, outcomes.c.reason
            )
        ).all()
        batches = conn.execute(select(func.count(func.distinct(outcomes.c.batch_id)))).scalar_one()
    by_verdict: Counter[tuple[str, str]] = Counter()
    for (status, reason, _source), n in events.items():
        by_verdict[(status, reason)] += n
    assert by_verdict == {(status, reason or ""): n for status, reason, n in rows}

    assert value(samples, "sluice_dead_letters_total") == 1
    assert labelled(samples, "sluice_triggers_total", "status") == {("delivered",): deliveries}
    assert value(samples, "sluice_batch_duration_seconds_count") == batches
    assert value(samples, "sluice_batch_duration_seconds_bucket", le="+Inf") == batches
    validated = sum(events.values()) - events[("rejected", "invalid", "unknown")]
    assert value(samples, "sluice_decision_latency_seconds_count") == validated
    assert 0 < value(samples, "sluice_decision_latency_seconds_sum") < validated * 60

    requests = labelled(samples, "sluice_http_requests_total", "route", "method", "status")
    for key, n in sender.requests.items():
        assert requests[key] == n, key
    assert not any("/no/such" in route for route, _, _ in requests)  # templates only
    tracks = sum(n for (route, _, _), n in sender.requests.items() if route == "/v1/track")
    assert (
        value(
            samples, "sluice_http_request_duration_seconds_count", route="/v1/track", method="POST"
        )
        == tracks
    )

    depths = {
        dict(labels)["queue"]: v
        for (name, labels), v in samples.items()
        if name == "sluice_queue_depth"
    }
    assert depths == {INGEST_QUEUE: 0, "sluice.automations": 0, TASK_QUEUE: 2}
    assert value(samples, "sluice_triggers_due") == 0

    excerpt = [
        line
        for line in httpx.get(f"{cluster.gateway_url}/metrics").text.splitlines()
        if line.startswith(("sluice_events_total", "sluice_queue_depth", "sluice_triggers_total"))
        or line.startswith(("sluice_dead_letters_total", "sluice_batch_duration_seconds_count"))
    ]
    print("\n".join(excerpt))


METRIC_NAME = re.compile(r"\bsluice_[a-z_]+")
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def family_of(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(dashboard["panels"])
    for panel in list(panels):
        panels += panel.get("panels", [])  # rows may hold their own
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_the_dashboard_plots_every_metric_the_gateway_shows_and_no_other(
    cluster: Cluster,
) -> None:
    names, _ = cluster.scrape()
    shown = {family_of(name) for name in names if name.startswith("sluice_")}
    plotted = {
        family_of(name) for expr in dashboard_expressions() for name in METRIC_NAME.findall(expr)
    }
    assert shown, "the scrape shows no sluice metric"
    assert plotted - shown == set(), "the dashboard plots metrics /metrics does not have"
    assert shown - plotted == set(), "metrics the dashboard does not plot"
