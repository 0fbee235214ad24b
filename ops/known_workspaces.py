"""Writing the known workspace ids (``sluice.producer.workspace_ids``) from the database:
a worker does it when it starts, so that ``EventClient`` refuses an unknown workspace id
(docs/operations.md, Known workspaces)."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import Engine, select

from sluice.producer.workspace_ids import announce
from sluice.store.schema import workspaces
from sluice.store.workspaces import NewWorkspace, create_workspace

log = logging.getLogger(__name__)


def announce_all(engine: Engine, client: redis.Redis) -> int:
    """Add every workspace id of the database to the known ones; how many. Raises the
    database's or Redis's error."""
    with engine.connect() as conn:
        ids = list(conn.execute(select(workspaces.c.id)).scalars())
    announce(client, ids)
    return len(ids)


def create_known_workspace(
    engine: Engine, client: redis.Redis, name: str
) -> tuple[NewWorkspace, bool]:
    """Create a workspace (``sluice.store.workspaces.create_workspace``) and add it to the
    known ids at once, so that ``EventClient`` takes its id; and whether Redis took it
    (if not, the next worker start writes it). ``sluice workspace create`` and the control
    plane's ``POST /admin/v1/workspaces`` both create workspaces here."""
    created = create_workspace(engine, name)
    try:
        announce(client, [created.workspace_id])
    except redis.RedisError as exc:
        log.warning("workspace %s is not yet known on Redis: %s", created.workspace_id, exc)
        return created, False
    return created, True
