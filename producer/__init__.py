"""Putting events on the Sluice queue: the canonical model, the client, the wire contract.

The public surface, grouped by role:

- client: ``EventClient``
- model: ``Event``, ``EventKind``
- transports: ``Transport``, ``BrokerTransport``, ``MemoryTransport``
- errors: ``SluiceError``, ``InvalidEventError``, ``PublishError``
"""

from producer.client import EventClient
from producer.errors import InvalidEventError, PublishError, SluiceError
from producer.events import Event, EventKind
from producer.transport import BrokerTransport, MemoryTransport, Transport

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
