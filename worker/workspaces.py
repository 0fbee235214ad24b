"""Workspaces and their write keys. Keys are random, shown once, and stored as sha256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, select

from producer.events import utc_now
from worker.db import writing
from worker.schema import api_keys, workspaces

WRITE_KEY_PREFIX = "sk_live_"


def hash_key(write_key: str) -> str:
    # Keys carry 192 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(write_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewWorkspace:
    workspace_id: str
    write_key: str


def create_workspace(engine: Engine, name: str) -> NewWorkspace:
    """Create a workspace with one write key; the key is returned here and never again."""
    workspace_id = str(uuid.uuid4())
    write_key = WRITE_KEY_PREFIX + secrets.token_urlsafe(24)
    now = utc_now()
    with writing(engine) as conn:
        conn.execute(workspaces.insert().values(id=workspace_id, name=name, created_at=now))
        conn.execute(
            api_keys.insert().values(
                key_hash=hash_key(write_key), workspace_id=workspace_id, created_at=now
            )
        )
    return NewWorkspace(workspace_id, write_key)


def workspace_for_key(engine: Engine, write_key: str) -> str | None:
    query = select(api_keys.c.workspace_id).where(api_keys.c.key_hash == hash_key(write_key))
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()
