"""``EventClient``: how other services put events on the Sluice queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import redis
from pydantic import ValidationError

from sluice.producer.envelope import describe_validation_error
from sluice.producer.errors import InvalidEventError, UnknownWorkspaceError
from sluice.producer.events import Event, utc_now
from sluice.producer.publisher import DEFAULT_BATCH_EVENTS, open_publisher
from sluice.producer.transport import Transport, is_redis_url
from sluice.producer.workspace_ids import is_known

EventInput = Event | Mapping[str, Any]


class EventClient:
    """Queue events for one workspace.

    >>> with EventClient(workspace_id, broker_url="redis://127.0.0.1:6379/0") as client:
    ...     client.send({"kind": "custom", "name": "Signed Up", "user_id": "u1"})

    Events are given as ``Event`` objects or as mappings of ``Event`` fields (without
    ``workspace_id``, which the client fills in). ``message_id`` is generated when absent;
    send the same ``message_id`` again to retry safely.

    When ``send``/``send_batch`` returns, its events are in the queue. When the queue cannot
    be reached the call raises ``PublishError`` within about ``timeout_s`` seconds; an
    invalid event raises ``InvalidEventError`` and nothing of that call is queued.

    ``redis_url`` (default: ``broker_url`` if it is a Redis URL) is where events are marked
    as queued, so ``GET /v1/events/{id}`` answers ``queued`` until a worker decides them.
    With a Redis broker, each batch is also journaled there until a worker has committed it
    (``sluice.producer.journal``): give the workers' ``SLUICE_REDIS_URL``.

    With a Redis connection, the first call also checks that ``workspace_id`` is a known
    workspace (``sluice.producer.workspace_ids``, written by the workers and ``sluice
    workspace create``) and raises ``UnknownWorkspaceError``, queueing nothing, when it is
    not; the answer is kept for the client's life. Where no worker has written the known
    ids yet, or Redis does not answer the check, the events are queued unchecked.
    """

    def __init__(
        self,
        workspace_id: str,
        *,
        broker_url: str | None = None,
        redis_url: str | None = None,
        transport: Transport | None = None,
        timeout_s: float = 5.0,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        source: str = "client",
        pending_ttl_s: int = 86_400,
    ) -> None:
        if transport is None and broker_url is None:
            raise ValueError("EventClient needs broker_url or transport")
        if redis_url is None and is_redis_url(broker_url):
            redis_url = broker_url
        self._redis: redis.Redis | None = None
        if redis_url is not None:
            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        self.workspace_id = workspace_id
        self._workspace_checked = False
        self._source = source
        self._publisher = open_publisher(
            broker_url,
            self._redis,
            transport=transport,
            timeout_s=timeout_s,
            batch_events=batch_events,
            pending_ttl_s=pending_ttl_s,
        )

    def send(self, event: EventInput) -> str:
        """Queue one event; return its ``message_id``."""
        return self.send_batch([event])[0]

    def send_batch(self, events: Iterable[EventInput]) -> list[str]:
        """Queue events (validated all first); return their ``message_id``s in order."""
        received_at = utc_now()
        validated = [
            self._validate(event, received_at, index) for index, event in enumerate(events)
        ]
        if not validated:
            return []
        self._check_workspace()
        return self._publisher.publish(validated)

    def _check_workspace(self) -> None:
        if self._workspace_checked or self._redis is None:
            return
        try:
            known = is_known(self._redis, self.workspace_id)
        except redis.RedisError:
            return  # asked again next time; the publish reports an unreachable Redis
        if known is False:
            raise UnknownWorkspaceError(
                f"unknown workspace {self.workspace_id!r}: no such workspace "
                "(`sluice workspace list` shows them); nothing was queued"
            )
        self._workspace_checked = True

    def _validate(self, event: EventInput, received_at: Any, index: int) -> Event:
        if isinstance(event, Event):
            if event.workspace_id != self.workspace_id:
                raise InvalidEventError(
                    f"event {index}: workspace {event.workspace_id!r} is not this client's"
                )
            return event
        fields = {
            "source": self._source,
            "received_at": received_at,
            **event,
            "workspace_id": self.workspace_id,
        }
        try:
            return Event.model_validate(fields)
        except ValidationError as exc:
            raise InvalidEventError(f"event {index}: {describe_validation_error(exc)}") from exc

    def close(self) -> None:
        self._publisher.close()
        if self._redis is not None:
            self._redis.close()

    def __enter__(self) -> EventClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
