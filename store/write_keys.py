"""Write keys over time: rotation with a grace period, and the workspace list with each
workspace's working keys.

A rotation adds a new key and gives every key of the workspace that had no end an
``expires_at`` of now + grace; a key that already has one keeps it (a second rotation never
extends the first one's grace). A key works while now < ``expires_at``
(``sluice.store.workspaces.key_grant``); gateways learn of a rotation at once from a
notice on Redis, or within their key cache's TTL if the notice is lost
(``sluice.gateway.auth``, docs/data-lifecycle.md)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Engine, func, or_, select, update

from sluice.producer import keys
from sluice.producer.events import as_utc, utc_now
from sluice.store.engine import writing
from sluice.store.schema import api_keys, workspaces
from sluice.store.workspaces import hash_key, new_write_key

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 86_400  # one day


@dataclass(frozen=True, slots=True)
class RotatedKey:
    workspace_id: str
    write_key: str
    old_key_expires_at: datetime | None  # when the last old key stops; None: there was none


def rotate_key(
    engine: Engine, workspace_id: str, grace_s: int = DEFAULT_GRACE_S, now: datetime | None = None
) -> RotatedKey:
    """Give the workspace a new write key (returned here and never again). Its keys without
    an end stop working ``grace_s`` seconds from now (0: at once); keys that already had an
    end keep theirs. ``old_key_expires_at`` is the latest end among the old keys still
    working at ``now`` (those just given one included)."""
    if grace_s < 0:
        raise ValueError("the grace period cannot be negative")
    now = now or utc_now()
    ends_at = now + timedelta(seconds=grace_s)
    write_key = new_write_key()
    with writing(engine) as conn:
        # Rotations of one workspace one after the other: two at once would each miss the
        # other's new key, left without an end. (NO KEY UPDATE: ingestion goes on meanwhile.)
        found = conn.execute(
            select(workspaces.c.id)
            .where(workspaces.c.id == workspace_id)
            .with_for_update(key_share=True)
        )
        if found.one_or_none() is None:
            raise LookupError(f"no workspace {workspace_id!r}")
        conn.execute(
            update(api_keys)
            .where(api_keys.c.workspace_id == workspace_id, api_keys.c.expires_at.is_(None))
            .values(expires_at=ends_at)
        )
        last_end = conn.execute(
            select(func.max(api_keys.c.expires_at)).where(
                api_keys.c.workspace_id == workspace_id, api_keys.c.expires_at >= now
            )
        ).scalar_one_or_none()
        conn.execute(
            api_keys.insert().values(
                key_hash=hash_key(write_key), workspace_id=workspace_id, created_at=now
            )
        )
    return RotatedKey(workspace_id, write_key, None if last_end is None else as_utc(last_end))


def announce_rotation(client: redis.Redis, workspace_id: str) -> bool:
    """Tell the gateways to look the workspace's keys up again now; never raises. A lost
    notice only delays them to their key cache's TTL (``SLUICE_KEY_CACHE_TTL_S``)."""
    try:
        client.publish(keys.key_rotations(), workspace_id)
        return True
    except redis.RedisError as exc:
        log.warning("could not tell the gateways about the rotation (%s)", exc)
        return False


def list_workspaces(
    engine: Engine, now: datetime | None = None, *, only: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every workspace (or those of ``only``), oldest first: id, name, creation time, how
    many keys work now, when the first of those ends (None: none ends), and its settings."""
    now = now or utc_now()
    working = or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now)
    key_counts = (
        select(
            api_keys.c.workspace_id,
            func.count().label("active_keys"),
            func.min(api_keys.c.expires_at).label("next_key_expires_at"),
        )
        .where(working)
        .group_by(api_keys.c.workspace_id)
        .subquery()
    )
    query = (
        select(
            workspaces.c.id,
            workspaces.c.name,
            workspaces.c.created_at,
            workspaces.c.settings,
            func.coalesce(key_counts.c.active_keys, 0).label("active_keys"),
            key_counts.c.next_key_expires_at,
        )
        .select_from(workspaces.outerjoin(key_counts, key_counts.c.workspace_id == workspaces.c.id))
        .order_by(workspaces.c.created_at, workspaces.c.id)
    )
    if only is not None:
        query = query.where(workspaces.c.id.in_(list(only)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "workspace_id": row.id,
            "name": row.name,
            "created_at": as_utc(row.created_at).isoformat(),
            "active_keys": row.active_keys,
            "next_key_expires_at": (
                None
                if row.next_key_expires_at is None
                else as_utc(row.next_key_expires_at).isoformat()
            ),
            "settings": row.settings or {},
        }
        for row in rows
    ]
