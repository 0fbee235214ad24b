"""Write-key authentication with a short-lived cache in front of the database."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from sluice.gateway.cache import TtlCache
from sluice.gateway.errors import unauthorized

KeyLookup = Callable[[str], str | None]


class WriteKeys:
    """Maps write keys to workspace ids; remembers answers (including "no such key") for
    ``ttl_s`` seconds so that a burst of requests costs one database query. While the
    database is away, an answer up to ``stale_s`` past its expiry still counts: queueing
    needs only Redis, and the workers wait for the database."""

    def __init__(self, lookup: KeyLookup, *, ttl_s: float, stale_s: float = 0.0) -> None:
        self._lookup = lookup
        self._cache: TtlCache[str, str] = TtlCache(
            ttl_s=ttl_s, cache_misses=True, stale_s=stale_s, stale_if=(SQLAlchemyError,)
        )

    def workspace_for(self, write_key: str) -> str | None:
        return self._cache.get(write_key, lambda: self._lookup(write_key))

    def cached(self, write_key: str) -> tuple[bool, str | None]:
        """``(True, workspace or None)`` if the answer is cached; never queries."""
        return self._cache.peek(write_key)


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
