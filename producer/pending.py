"""Pending marks: which events are queued but not yet decided.

``GET /v1/events/{id}`` answers ``queued`` for a marked event and 404 for an id nobody
queued. Publishers mark after the broker took the batch (so a mark never claims an event
that was not queued); the worker clears the marks once the batch's outcomes are committed.
Marks expire, so a lost clear costs memory for a while, never correctness.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis

from sluice.producer import keys
from sluice.producer.events import Event

log = logging.getLogger(__name__)


# One command for a whole batch: a pipeline of N `SET … EX` costs N replies to parse.
_MARK_ALL = """
for _, key in ipairs(KEYS) do
    redis.call('SET', key, '1', 'EX', ARGV[1])
end
return #KEYS
"""


class PendingMarks:
    def __init__(self, client: redis.Redis, *, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._mark_all = client.register_script(_MARK_ALL)

    def mark(self, events: Iterable[Event]) -> None:
        """Mark events as queued, one round trip per workspace (keys of one script share a
        hash tag). Failure is logged, not raised: the events are queued already, only the
        ``queued`` answer is missing until they are decided."""
        by_workspace: dict[str, list[str]] = {}
        for event in events:
            by_workspace.setdefault(event.workspace_id, []).append(
                keys.pending(event.workspace_id, event.message_id)
            )
        try:
            for names in by_workspace.values():
                self._mark_all(keys=names, args=[self._ttl_s])
        except redis.RedisError as exc:
            log.warning("could not mark events as queued: %s", exc)

    def clear(self, ids: Iterable[tuple[str, str]]) -> None:
        """Forget the marks of decided ``(workspace_id, message_id)`` pairs, one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        clear_on(pipe, ids)
        pipe.execute()

    def is_pending(self, workspace_id: str, message_id: str) -> bool:
        return bool(self._redis.exists(keys.pending(workspace_id, message_id)))


def clear_on(pipe: redis.client.Pipeline, ids: Iterable[tuple[str, str]]) -> None:
    """Queue on ``pipe``: forget the marks of decided ``(workspace_id, message_id)`` pairs."""
    names = [keys.pending(workspace_id, message_id) for workspace_id, message_id in ids]
    if names:
        pipe.unlink(*names)
