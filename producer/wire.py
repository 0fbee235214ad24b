"""Names and encoding shared by everything that talks to the queue (the wire contract).

Producers and the worker import these; changing one is a protocol change.
"""

from __future__ import annotations

from typing import Any

import orjson
from kombu.serialization import register

INGEST_TASK = "sluice.ingest_batch"
INGEST_QUEUE = "sluice.ingest"

SERIALIZER = "sluice-orjson"
CONTENT_TYPE = "application/x-sluice-orjson"


def _dumps(body: Any) -> bytes:
    return orjson.dumps(body)


def _loads(payload: bytes | str) -> Any:
    return orjson.loads(payload)


def register_serializer() -> None:
    """Register the orjson serializer with kombu (idempotent)."""
    register(SERIALIZER, _dumps, _loads, content_type=CONTENT_TYPE, content_encoding="utf-8")
