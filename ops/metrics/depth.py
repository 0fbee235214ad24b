"""The gauges read at scrape time, kept nowhere: how many messages wait in each Sluice
queue (from the broker), and how many triggers are due (from the database).

The queues are ``sluice.ingest``, ``sluice.automations`` and every queue a task automation
names. On a Redis broker a queue is a list and its depth one ``LLEN`` (as the gateway's
backpressure samples it, ``sluice.gateway.state.QueueDepth``); on another broker
(RabbitMQ) it is a passive ``queue.declare`` through kombu, which creates nothing. Messages
a worker has taken and not acknowledged are not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import datetime

import redis
from kombu.connection import Connection
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, literal_column, select
from sqlalchemy.exc import SQLAlchemyError

from sluice.actions.task import DEFAULT_TASK_QUEUE
from sluice.ops.metrics.families import QUEUE_DEPTH, TRIGGERS_DUE
from sluice.producer.events import utc_now
from sluice.producer.transport import is_redis_url
from sluice.producer.wire import INGEST_QUEUE
from sluice.store.automations import OPEN
from sluice.store.schema import automations, trigger_deliveries

log = logging.getLogger(__name__)


class ScrapeGauges:
    """Queue depths and due triggers, read when ``collect`` is called. A database that does
    not answer leaves out the due triggers and the automations' own queues; a broker that
    does not answer leaves out the depths (each logged)."""

    def __init__(
        self,
        broker_url: str,
        database: Engine,
        *,
        broker_redis: redis.Redis | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.broker_url = broker_url
        self.database = database
        self.timeout_s = timeout_s
        self._broker_redis = broker_redis

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            QUEUE_DEPTH,
            "Messages waiting in each queue of the broker (not those a worker holds).",
            labels=["queue"],
        )
        try:
            for queue, count in self.depths(self.queue_names()).items():
                depth.add_metric([queue], float(count))
        except Exception as exc:  # the counters are still worth showing
            log.warning("queue depths not read from the broker: %s", exc)
        yield depth
        due = GaugeMetricFamily(
            TRIGGERS_DUE,
            "Open triggers whose next attempt is due (the deliverers' backlog).",
        )
        found = self.triggers_due(utc_now())
        if found is not None:
            due.add_metric([], float(found))
        yield due

    def queue_names(self) -> list[str]:
        names = [INGEST_QUEUE, DEFAULT_TASK_QUEUE]
        query = select(automations.c.queue).where(automations.c.queue.is_not(None)).distinct()
        try:
            with self.database.connect() as conn:
                named = conn.scalars(query).all()
        except SQLAlchemyError as exc:
            log.warning("automation queues not read from the database: %s", exc)
            return names
        return [*names, *sorted({str(name) for name in named} - set(names))]

    def depths(self, names: Sequence[str]) -> dict[str, int]:
        if is_redis_url(self.broker_url):
            pipe = self._redis().pipeline(transaction=False)
            for name in names:
                pipe.llen(name)
            return {name: int(count) for name, count in zip(names, pipe.execute(), strict=True)}
        return self._declared_depths(names)

    def _declared_depths(self, names: Sequence[str]) -> dict[str, int]:
        depths = {}
        with Connection(self.broker_url, connect_timeout=self.timeout_s) as conn:
            conn.ensure_connection(max_retries=1)
            for name in names:
                channel = conn.channel()
                try:
                    depths[name] = int(channel.queue_declare(queue=name, passive=True)[1])
                except conn.channel_errors:
                    depths[name] = 0  # not declared yet: nothing waits in it
                finally:
                    with suppress(Exception):  # the broker closes it after a refusal
                        channel.close()
        return depths

    def triggers_due(self, now: datetime) -> int | None:
        # The statuses as literals, so that PostgreSQL uses its partial index on open
        # triggers (as ``sluice.delivery.leases`` claims them).
        query = (
            select(func.count())
            .select_from(trigger_deliveries)
            .where(
                trigger_deliveries.c.status.in_([literal_column(f"'{s}'") for s in OPEN]),
                trigger_deliveries.c.next_attempt_at <= now,
            )
        )
        try:
            with self.database.connect() as conn:
                return int(conn.execute(query).scalar_one())
        except SQLAlchemyError as exc:
            log.warning("due triggers not read from the database: %s", exc)
            return None

    def _redis(self) -> redis.Redis:
        if self._broker_redis is None:
            self._broker_redis = redis.Redis.from_url(
                self.broker_url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
            )
        return self._broker_redis
