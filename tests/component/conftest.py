"""Fixtures shared by the component tests (the suite's own are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sluice.settings import Settings
from sluice.worker.runtime import Runtime


@pytest.fixture
def runtime(isolated_redis_url: str, database_url: str) -> Iterator[Runtime]:
    runtime = Runtime(
        Settings(redis_url=isolated_redis_url, database_url=database_url, max_deliveries=2)
    )
    yield runtime
    runtime.store.engine.dispose()
    runtime.redis.close()
