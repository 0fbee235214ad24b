"""The known workspace ids on Redis (``keys.known_workspaces``): a worker writes every id of
its database when it starts, ``sluice workspace create`` adds the new one, and
``EventClient`` asks once whether its workspace is among them before it queues anything
(docs/operations.md, Known workspaces). A deployment where nothing wrote the set yet (older
workers) has no set at all: the question then has no answer, and the client queues as before.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from sluice.producer import keys

PRESENT = ""  # a member that is no workspace id: the set exists once written, even empty


def announce(client: redis.Redis, workspace_ids: Iterable[str]) -> None:
    """Add ``workspace_ids`` to the known ones (one round trip); raises ``redis.RedisError``."""
    client.sadd(keys.known_workspaces(), PRESENT, *workspace_ids)


def forget(client: redis.Redis, workspace_id: str) -> None:
    """Remove a workspace that no longer exists; raises ``redis.RedisError``."""
    client.srem(keys.known_workspaces(), workspace_id)


def is_known(client: redis.Redis, workspace_id: str) -> bool | None:
    """Whether ``workspace_id`` is a known workspace; None when no set was ever written
    (one round trip); raises ``redis.RedisError``."""
    pipe = client.pipeline(transaction=False)
    pipe.sismember(keys.known_workspaces(), workspace_id)
    pipe.exists(keys.known_workspaces())
    member, exists = pipe.execute()
    if not exists:
        return None
    return bool(member) and workspace_id != PRESENT
