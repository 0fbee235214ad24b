"""Workspaces and their write keys. Keys are random, shown once, and stored as sha256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt
from sqlalchemy import Engine, select, update

from sluice.producer.events import utc_now
from sluice.rules.engine import RulePolicy
from sluice.worker.db.engine import writing
from sluice.worker.db.schema import api_keys, workspaces

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


def configure_workspace(
    engine: Engine, workspace_id: str, overrides: dict[str, str]
) -> dict[str, Any]:
    """Merge rule overrides into a workspace's settings; return them all. Values are checked
    as the environment settings are (``SLUICE_EMAIL_OPEN_WINDOW_S`` and so on)."""
    allowed = set(RulePolicy.__dataclass_fields__)
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(allowed)}")
    checked = RuleOverrides.model_validate(overrides).model_dump(exclude_unset=True)
    with writing(engine) as conn:
        current = conn.execute(
            select(workspaces.c.settings).where(workspaces.c.id == workspace_id)
        ).one_or_none()
        if current is None:
            raise LookupError(f"no workspace {workspace_id!r}")
        merged = {**(current.settings or {}), **checked}
        conn.execute(
            update(workspaces).where(workspaces.c.id == workspace_id).values(settings=merged)
        )
    return merged


class RuleOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email_open_window_s: PositiveInt | None = None
    unknown_user_grace_s: NonNegativeInt | None = None
    bot_mode: Literal["drop", "flag"] | None = None


def workspace_for_key(engine: Engine, write_key: str) -> str | None:
    query = select(api_keys.c.workspace_id).where(api_keys.c.key_hash == hash_key(write_key))
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()
