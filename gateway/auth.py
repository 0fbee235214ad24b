"""Write-key authentication with a short-lived cache in front of the database."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from sluice.gateway.blocking import from_database
from sluice.gateway.cache import TtlCache
from sluice.gateway.errors import unauthorized
from sluice.logs import bind
from sluice.producer.events import utc_now
from sluice.store.workspaces import MAX_WRITE_KEY_CHARS, KeyGrant

KeyLookup = Callable[[str], KeyGrant | None]


class WriteKeys:
    """Maps write keys to workspace ids; remembers answers (including "no such key") for
    ``ttl_s`` seconds so that a burst of requests costs one database query. While the
    database is away, an answer up to ``stale_s`` past its expiry still counts: queueing
    needs only Redis, and the workers wait for the database.

    A key's own end (``api_keys.expires_at``, set by a rotation) is cached with it and
    checked at every use, so a cached key stops exactly at its end, stale or not. A
    rotation made after the key was cached reaches this cache through ``reload``
    (a notice on Redis: ``sluice.gateway.key_notices``), or at the latest ``ttl_s`` later.

    A key longer than ``MAX_WRITE_KEY_CHARS`` is answered "no such key" at once: neither
    looked up nor remembered. The cache holds each key's sha256 digest, not the key: an
    entry costs the same whatever was sent (``TtlCache`` bounds misses apart from hits)."""

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        ttl_s: float,
        stale_s: float = 0.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._cache: TtlCache[bytes, KeyGrant] = TtlCache(
            ttl_s=ttl_s, cache_misses=True, stale_s=stale_s, stale_if=(SQLAlchemyError,)
        )

    def workspace_for(self, write_key: str) -> str | None:
        if len(write_key) > MAX_WRITE_KEY_CHARS:
            return None
        grant = self._cache.get(_digest(write_key), lambda: self._lookup(write_key))
        return self._working(grant)

    def cached(self, write_key: str) -> tuple[bool, str | None]:
        """``(True, workspace or None)`` if the answer is known without a query (cached,
        or a key too long to be one); never queries."""
        if len(write_key) > MAX_WRITE_KEY_CHARS:
            return True, None
        found, grant = self._cache.peek(_digest(write_key))
        return found, self._working(grant)

    def reload(self, workspace_id: str | None = None) -> int:
        """Look the workspace's cached keys up again at their next use (after a rotation);
        with no workspace, every cached key. Returns how many."""
        return self._cache.expire_where(
            lambda grant: (
                workspace_id is None or (grant is not None and grant.workspace_id == workspace_id)
            )
        )

    def _working(self, grant: KeyGrant | None) -> str | None:
        """The grant's workspace if its key works now (checked at every use)."""
        return grant.workspace_id if grant is not None and grant.works_at(self._clock()) else None


def _digest(write_key: str) -> bytes:
    return hashlib.sha256(write_key.encode()).digest()


async def workspace_for(keys: WriteKeys, write_key: str) -> str | None:
    """The key's workspace (cached), or None; 503 while the database is unavailable."""
    found, workspace_id = keys.cached(write_key)
    if not found:
        workspace_id = await from_database(keys.workspace_for, write_key)
    bind(workspace_id=workspace_id)  # on this request's log lines (sluice.logs)
    return workspace_id


async def workspace_from_basic_auth(keys: WriteKeys, header: str | None) -> str:
    """The workspace of the write key in an HTTP Basic ``Authorization`` header; 401 when
    it opens none."""
    workspace_id = await workspace_for(keys, basic_auth_user(header))
    if workspace_id is None:
        raise unauthorized("unknown write key")
    return workspace_id


def basic_auth_user(header: str | None) -> str:
    """The user part of an HTTP Basic ``Authorization`` header (Segment's write key)."""
    if not header:
        raise unauthorized("missing write key: send it as the HTTP Basic user name")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise unauthorized("the write key goes in HTTP Basic authentication")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise unauthorized("malformed HTTP Basic credentials") from exc
    user = decoded.partition(":")[0]
    if not user:
        raise unauthorized("missing write key: send it as the HTTP Basic user name")
    return user
