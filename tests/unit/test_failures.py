"""How the worker classifies failures (``sluice.worker.failures``)."""

from __future__ import annotations

import redis

from sluice.producer.errors import PublishError
from sluice.worker.failures import is_transient


def chained(error: PublishError, cause: Exception) -> PublishError:
    error.__cause__ = cause
    return error


def test_a_publish_that_failed_for_a_passing_reason_is_transient() -> None:
    restarting = chained(PublishError("not journaled"), redis.ConnectionError("refused"))
    refused = chained(PublishError("not journaled"), redis.ResponseError("WRONGTYPE"))
    assert is_transient(restarting)
    assert not is_transient(refused)
    assert not is_transient(PublishError("no cause"))
