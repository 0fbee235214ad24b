"""Putting events on the Sluice queue: the canonical model, the client, the wire contract.

The public surface, grouped by role:

- client: ``EventClient``
- model: ``Event``, ``EventKind``
- transports: ``Transport``, ``BrokerTransport``, ``MemoryTransport``
- errors: ``SluiceError``, ``InvalidEventError``, ``PublishError``

Names load on first use, so ``producer.events`` (which ``rules`` imports) does not pull in
Celery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producer.client import EventClient
    from producer.errors import InvalidEventError, PublishError, SluiceError
    from producer.events import Event, EventKind
    from producer.transport import BrokerTransport, MemoryTransport, Transport

_HOMES = {
    "EventClient": "producer.client",
    "Event": "producer.events",
    "EventKind": "producer.events",
    "BrokerTransport": "producer.transport",
    "MemoryTransport": "producer.transport",
    "Transport": "producer.transport",
    "SluiceError": "producer.errors",
    "InvalidEventError": "producer.errors",
    "PublishError": "producer.errors",
}

__all__ = [
    "BrokerTransport",
    "Event",
    "EventClient",
    "EventKind",
    "InvalidEventError",
    "MemoryTransport",
    "PublishError",
    "SluiceError",
    "Transport",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'producer' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
