"""An in-house consumer of Sluice's task action, as a team would write one: its own Celery
app on the same broker, with a task Sluice's automation names."""

from __future__ import annotations

import os
from typing import Any

import orjson
import redis
from celery import Celery

app = Celery("consumer", broker=os.environ.get("TEST_CONSUMER_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(broker_connection_retry_on_startup=True)


@app.task(name="tests.consumer.record")
def record(payload: dict[str, Any]) -> None:
    client = redis.Redis.from_url(app.conf.broker_url)
    client.rpush("test-consumer:received", orjson.dumps(payload))
