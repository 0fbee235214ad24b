"""Workspaces and their write keys. Keys are random, shown once, and stored as sha256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt
from sqlalchemy import Engine, select, update

from sluice.producer.events import as_utc, utc_now
from sluice.store.engine import writing
from sluice.store.schema import api_keys, workspaces

WRITE_KEY_PREFIX = "sk_live_"
# Longer than any key ``new_write_key`` makes (40 characters), with room to spare: a longer
# one cannot be a key, and is refused before any lookup (``sluice.gateway.auth``).
MAX_WRITE_KEY_CHARS = 128


MAX_WORKSPACE_NAME_CHARS = 200  # workspaces.name


def hash_key(write_key: str) -> str:
    # Keys carry 192 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(write_key.encode()).hexdigest()


def new_write_key() -> str:
    return WRITE_KEY_PREFIX + secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class NewWorkspace:
    workspace_id: str
    write_key: str


def create_workspace(engine: Engine, name: str) -> NewWorkspace:
    """Create a workspace with one write key; the key is returned here and never again."""
    if not name.strip() or len(name) > MAX_WORKSPACE_NAME_CHARS:
        raise ValueError(f"a workspace name has 1 to {MAX_WORKSPACE_NAME_CHARS} characters")
    workspace_id = str(uuid.uuid4())
    write_key = new_write_key()
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
    allowed = set(RuleOverrides.model_fields)  # the rule policy, and the gateway's keys
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
    # Events a second the gateways take from the workspace; 0: none (sluice.gateway.rate_limit).
    rate_limit_per_s: NonNegativeInt | None = None
    # Days of events kept (event time), over SLUICE_RETENTION_DAYS; 0: keep everything
    # (sluice.ops.retention_sweep).
    retention_days: NonNegativeInt | None = None


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What a write key opens: its workspace, until ``expires_at`` (None: no end)."""

    workspace_id: str
    expires_at: datetime | None

    def works_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


def key_grant(engine: Engine, write_key: str, now: datetime | None = None) -> KeyGrant | None:
    """The key's workspace and expiry, or None for an unknown or expired key (a rotated key
    stops at its ``expires_at``: ``sluice.store.write_keys``). A key longer than
    ``MAX_WRITE_KEY_CHARS`` is unknown without a query."""
    if len(write_key) > MAX_WRITE_KEY_CHARS:
        return None
    query = select(api_keys.c.workspace_id, api_keys.c.expires_at).where(
        api_keys.c.key_hash == hash_key(write_key)
    )
    with engine.connect() as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        return None
    grant = KeyGrant(row.workspace_id, None if row.expires_at is None else as_utc(row.expires_at))
    return grant if grant.works_at(now or utc_now()) else None


def workspace_for_key(engine: Engine, write_key: str) -> str | None:
    """The workspace of a key that works now (unknown and expired keys: None)."""
    grant = key_grant(engine, write_key)
    return None if grant is None else grant.workspace_id


def rate_limit_per_s(engine: Engine, workspace_id: str) -> int:
    """The workspace's ``rate_limit_per_s`` setting; 0 (no limit) when unset or unknown."""
    query = select(workspaces.c.settings).where(workspaces.c.id == workspace_id)
    with engine.connect() as conn:
        settings = conn.execute(query).scalar_one_or_none()
    return int((settings or {}).get("rate_limit_per_s") or 0)
