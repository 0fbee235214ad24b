"""Tokens of the control plane (``/admin/v1``, docs/admin-api.md): created, listed and
revoked by ``sluice token``, the root of trust (it talks to the database), and shown only
once; stored as a sha256 of the token.

A token is cluster-wide (``workspaces`` None) or scoped to workspaces, read-only or not,
with an optional expiry. ``token_grant`` answers what a presented token may do: None for
an unknown, expired or revoked one."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from sluice.producer.events import as_utc, utc_now
from sluice.store.engine import writing
from sluice.store.schema import admin_tokens, workspaces

TOKEN_PREFIX = "sat_"  # Sluice admin token: tells it from a write key (sk_…) at a glance
TOKEN_ID_PREFIX = "tok_"
# Tokens carry 256 random bits; anything much longer is not one (refused before a lookup).
MAX_TOKEN_CHARS = 128


def hash_token(token: str) -> str:
    # 256 random bits: a fast hash is enough, there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is known of a token (never the token itself)."""

    token_id: str
    name: str
    workspaces: tuple[str, ...] | None  # None: every workspace (cluster-wide)
    read_only: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def fields(self) -> dict[str, Any]:
        """As ``sluice token list --json`` and the API show it."""
        return {
            "token_id": self.token_id,
            "name": self.name,
            "workspaces": "*" if self.workspaces is None else list(self.workspaces),
            "read_only": self.read_only,
            "created_at": self.created_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }

    def works_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    @property
    def cluster_wide(self) -> bool:
        return self.workspaces is None

    def reaches(self, workspace_id: str) -> bool:
        return self.workspaces is None or workspace_id in self.workspaces


@dataclass(frozen=True, slots=True)
class NewToken:
    info: TokenInfo
    token: str  # shown this once

    def fields(self) -> dict[str, Any]:
        return {**self.info.fields(), "token": self.token}


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        token_id=row.id,
        name=row.name,
        workspaces=None if row.workspaces is None else tuple(row.workspaces),
        read_only=bool(row.read_only),
        created_at=as_utc(row.created_at),
        expires_at=None if row.expires_at is None else as_utc(row.expires_at),
        revoked_at=None if row.revoked_at is None else as_utc(row.revoked_at),
    )


def create_token(
    engine: Engine,
    name: str,
    *,
    workspace_ids: tuple[str, ...] = (),
    read_only: bool = False,
    expires_in_s: int | None = None,
    now: datetime | None = None,
) -> NewToken:
    """A new token: cluster-wide without ``workspace_ids``, else scoped to them (each must
    exist: ``LookupError``)."""
    if not name.strip():
        raise ValueError("a token needs a name")
    if expires_in_s is not None and expires_in_s <= 0:
        raise ValueError("--expires-in-s must be positive")
    now = now or utc_now()
    scope = tuple(dict.fromkeys(workspace_ids)) or None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    info = TokenInfo(
        token_id=TOKEN_ID_PREFIX + secrets.token_hex(8),
        name=name,
        workspaces=scope,
        read_only=read_only,
        created_at=now,
        expires_at=None if expires_in_s is None else now + timedelta(seconds=expires_in_s),
        revoked_at=None,
    )
    with writing(engine) as conn:
        if scope is not None:
            known = set(conn.scalars(select(workspaces.c.id).where(workspaces.c.id.in_(scope))))
            missing = [ws for ws in scope if ws not in known]
            if missing:
                raise LookupError(f"no workspace {missing[0]!r}")
        conn.execute(
            admin_tokens.insert().values(
                id=info.token_id,
                name=name,
                token_hash=hash_token(token),
                workspaces=None if scope is None else list(scope),
                read_only=read_only,
                created_at=now,
                expires_at=info.expires_at,
            )
        )
    return NewToken(info, token)


def list_tokens(engine: Engine) -> list[TokenInfo]:
    """Every token, newest first (revoked and expired ones too: the record)."""
    query = select(admin_tokens).order_by(admin_tokens.c.created_at.desc(), admin_tokens.c.id)
    with engine.connect() as conn:
        return [_info(row) for row in conn.execute(query)]


def revoke_token(engine: Engine, token_id: str, now: datetime | None = None) -> bool:
    """Revoke a token at once; False if there is no such token or it was revoked already."""
    with writing(engine) as conn:
        done = conn.execute(
            update(admin_tokens)
            .where(admin_tokens.c.id == token_id, admin_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now or utc_now())
        )
    return done.rowcount == 1


def token_grant(engine: Engine, token: str, now: datetime | None = None) -> TokenInfo | None:
    """The token's grant if it works now; None for an unknown, expired or revoked one."""
    if not token or len(token) > MAX_TOKEN_CHARS or "\x00" in token:
        return None
    query = select(admin_tokens).where(admin_tokens.c.token_hash == hash_token(token))
    with engine.connect() as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        return None
    info = _info(row)
    return info if info.works_at(now or utc_now()) else None
