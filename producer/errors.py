"""Errors raised by the producer side of Sluice.

Hierarchy::

    SluiceError
    ├── InvalidEventError   an event failed validation; nothing was queued
    │   └── UnknownWorkspaceError   no such workspace; nothing was queued
    └── PublishError        the queue did not take the events (broker unreachable, full, ...)

Foreign errors (kombu, redis-py, sockets) are translated into these at the transport edge,
so callers handle one family of exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence


class SluiceError(Exception):
    """Root of every error this package raises on purpose."""


class InvalidEventError(SluiceError, ValueError):
    """An event does not fit the canonical model. Nothing from the call was queued."""


class UnknownWorkspaceError(InvalidEventError):
    """The client's workspace id is not one of the known workspaces (``sluice workspace
    list``). Nothing from the call was queued."""


class PublishError(SluiceError):
    """The queue did not take some events.

    ``queued_message_ids`` lists the events of the same call that *were* queued before the
    failure (a large ``send_batch`` is split into several envelopes); every other event of
    the call was not queued and may be sent again safely with the same ``message_id``.
    """

    def __init__(self, message: str, *, queued_message_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.queued_message_ids = list(queued_message_ids)
