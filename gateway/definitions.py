"""A workspace's definitions (Bunce events, CleverTap business events) as the vendor
routes look them up: found ones cached, misses not."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine

from sluice.gateway.blocking import from_database
from sluice.gateway.cache import TtlCache
from sluice.store.definitions import Definition, find_definition


@dataclass(frozen=True, slots=True)
class DefinitionLookup:
    cache: TtlCache[Hashable, Definition]
    database: Engine

    async def find(
        self, workspace_id: str, format: Literal["bunce", "clevertap"], **match: str
    ) -> Definition | None:
        """A workspace's definition, or None. Found ones are cached for 30 s; misses are not,
        so a definition added a moment ago works at once. 503 while the database is down."""
        if any("\x00" in text for text in (workspace_id, *match.values())):
            return None  # no definition can have it (the database refuses to compare it)
        key = (workspace_id, format, tuple(sorted(match.items())))
        found, cached = self.cache.peek(key)
        if found:
            return cached

        def load() -> Definition | None:
            return find_definition(self.database, workspace_id, format, **match)

        return await from_database(self.cache.get, key, load)
