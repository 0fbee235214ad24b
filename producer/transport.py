"""Transports put envelopes on the queue. ``EventClient(transport=...)`` takes any of them.

- ``BrokerTransport``: the real queue, through Celery/kombu (Redis by default, RabbitMQ too).
- ``MemoryTransport``: keeps envelopes in a list, for tests of code that uses the client.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import redis.exceptions
from celery import Celery
from kombu.entity import Queue
from kombu.exceptions import KombuError

from sluice.producer.envelope import Envelope, Outgoing
from sluice.producer.errors import PublishError
from sluice.producer.wire import INGEST_QUEUE, SERIALIZER, register_serializer

log = logging.getLogger(__name__)


def is_redis_url(url: str | None) -> bool:
    return url is not None and url.startswith(("redis://", "rediss://", "redis+socket://"))


class Transport(Protocol):
    def publish(self, envelope: Outgoing) -> None:
        """Return only once the envelope is durable in the queue; raise PublishError else."""

    def close(self) -> None: ...


def publish_retry_policy(timeout_s: float) -> dict[str, float | int]:
    """Publish retries that end within about ``timeout_s``.

    Celery's default gives up after ~0.4 s (docs/reliability.md #9); ours rides out a short broker
    blip (a restart, a failover) but still answers within a bound the caller chose.
    """
    return {  # waits of 0, .1, .2, .25, .25 x timeout: about 0.8 x timeout in all
        "max_retries": 5,
        "interval_start": 0.0,
        "interval_step": max(timeout_s / 10, 0.05),
        "interval_max": max(timeout_s / 4, 0.1),
    }


def broker_transport_options(timeout_s: float, visibility_timeout_s: int) -> dict[str, Any]:
    """kombu transport options shared by producers and the worker."""
    return {
        # Unacked messages come back after this long (docs/reliability.md #3, #4). Celery's docs ask
        # for the same value in every app that talks to the broker.
        "visibility_timeout": visibility_timeout_s,
        # How often a worker sweeps for messages a dead worker left unacked: kombu's default
        # (~100 s) would add more than the visibility timeout itself to a crash recovery.
        "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 10)),
        "unacked_restore_throttle": 1,
        # A dead or unreachable Redis must fail a call in bounded time, not hang it.
        "socket_connect_timeout": max(timeout_s / 8, 0.1),
        "socket_timeout": max(timeout_s / 4, 0.2),
    }


class BrokerTransport:
    """Publishes envelopes as ``sluice.ingest_batch`` tasks on the ``sluice.ingest`` queue.

    ``publish`` returns when the broker has the message (for Redis: the ``LPUSH`` returned).
    When the broker is unreachable or refuses the write (for example Redis at ``maxmemory``
    with ``noeviction``) it keeps retrying for about ``timeout_s`` (a broker restart fits
    in that), then raises ``PublishError``: within ``timeout_s`` for a refused connection,
    within about twice that for a broker that accepts connections but never answers.
    """

    def __init__(
        self, broker_url: str, *, timeout_s: float = 5.0, visibility_timeout_s: int = 900
    ) -> None:
        register_serializer()
        self._retry_policy = publish_retry_policy(timeout_s)
        self._app = Celery("sluice-producer", broker=broker_url, set_as_current=False)
        self._app.conf.update(
            broker_transport_options=broker_transport_options(timeout_s, visibility_timeout_s),
            broker_connection_timeout=timeout_s / 8,
            task_serializer=SERIALIZER,
            task_queues=(Queue(INGEST_QUEUE),),
            task_create_missing_queues=False,
            task_send_sent_event=True,  # Flower shows tasks from the moment they are queued
            task_publish_retry_policy=self._retry_policy,
        )

    def publish(self, envelope: Outgoing) -> None:
        try:
            self._app.send_task(
                **envelope.task_message(), retry=True, retry_policy=self._retry_policy
            )
        except (KombuError, redis.exceptions.RedisError, OSError) as exc:
            log.error("queue refused batch %s: %s", envelope.batch_id, exc)
            raise PublishError(f"the queue did not take the events: {exc}") from exc

    def close(self) -> None:
        self._app.close()


class MemoryTransport:
    """Keeps published envelopes in ``envelopes`` (those published in their wire form
    decoded); ``fail_with`` makes publish raise."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.fail_with: PublishError | None = None

    def publish(self, envelope: Outgoing) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if not isinstance(envelope, Envelope):
            envelope = Envelope.model_validate_json(envelope.wire)
        self.envelopes.append(envelope)

    def close(self) -> None:
        pass
