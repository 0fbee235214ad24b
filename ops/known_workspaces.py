"""Writing the known workspace ids (``sluice.producer.workspace_ids``) from the database:
a worker does it when it starts, so that ``EventClient`` refuses an unknown workspace id
(docs/operations.md, Known workspaces)."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import Engine, select

from sluice.producer.workspace_ids import announce
from sluice.store.schema import workspaces

log = logging.getLogger(__name__)


def announce_all(engine: Engine, client: redis.Redis) -> int:
    """Add every workspace id of the database to the known ones; how many. Raises the
    database's or Redis's error."""
    with engine.connect() as conn:
        ids = list(conn.execute(select(workspaces.c.id)).scalars())
    announce(client, ids)
    return len(ids)
