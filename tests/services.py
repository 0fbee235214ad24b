"""Finding the Redis and PostgreSQL services the suite runs against.

Outside CI a missing service skips the tests that need it; in CI (``CI=true``) it fails
them, so a green CI run always means the real services were exercised.
"""

from __future__ import annotations

import os
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from sluice.producer import keys

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} — CI must run this test against the real service", pytrace=False)
    pytest.skip(reason)


def with_redis_db(url: str, db: int) -> str:
    """The same Redis server, another logical database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def redis_db_of(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def keys_besides_metrics(client: redis.Redis) -> int:
    """How many keys the Redis database holds, leaving out the metrics' hashes (a gateway
    adds its request counts there every second, docs/metrics.md): "nothing was queued"."""
    # One pass over the keys: a count of the metrics' keys taken apart from DBSIZE would
    # race with a flush that creates them between the two.
    prefix = keys.metric("").encode()
    return sum(1 for key in client.scan_iter() if not key.startswith(prefix))
