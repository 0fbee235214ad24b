"""Putting events on the Sluice queue: the canonical model, the client, the wire contract.

The public surface, grouped by role:

- client: ``EventClient``
- model: ``Event``, ``EventKind``
- transports: ``Transport``, ``BrokerTransport``, ``MemoryTransport``
- errors: ``SluiceError``, ``InvalidEventError``, ``UnknownWorkspaceError``, ``PublishError``

Names load on first use, so ``sluice.producer.events`` (which ``sluice.rules`` imports)
does not pull in Celery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.producer.client import EventClient
    from sluice.producer.errors import (
        InvalidEventError,
        PublishError,
        SluiceError,
        UnknownWorkspaceError,
    )
    from sluice.producer.events import Event, EventKind
    from sluice.producer.transport import BrokerTransport, MemoryTransport, Transport

_HOMES = {
    "EventClient": "sluice.producer.client",
    "Event": "sluice.producer.events",
    "EventKind": "sluice.producer.events",
    "BrokerTransport": "sluice.producer.transport",
    "MemoryTransport": "sluice.producer.transport",
    "Transport": "sluice.producer.transport",
    "SluiceError": "sluice.producer.errors",
    "InvalidEventError": "sluice.producer.errors",
    "PublishError": "sluice.producer.errors",
    "UnknownWorkspaceError": "sluice.producer.errors",
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
    "UnknownWorkspaceError",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sluice.producer' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
