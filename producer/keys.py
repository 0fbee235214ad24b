"""Every Redis key Sluice writes, in one place.

Keys of one workspace share the hash tag ``{workspace_id}`` so that a script touching
several of them would also run on a cluster.
"""

from __future__ import annotations

PREFIX = "sluice"


def pending(workspace_id: str, message_id: str) -> str:
    """Marks an event as queued and not yet decided (string ``1``, expires)."""
    return f"{PREFIX}:{{{workspace_id}}}:pending:{message_id}"


def deliveries(batch_id: str, retry: int) -> str:
    """Counts the deliveries of one queued batch message (integer, expires)."""
    return f"{PREFIX}:deliveries:{batch_id}:{retry}"


def order_claim(workspace_id: str, order_id: str) -> str:
    """Which message claimed an order id (string: the claiming ``message_id``, expires)."""
    return f"{PREFIX}:{{{workspace_id}}}:order:{order_id}"


def open_user(kind: str, value: str) -> str:
    """The user part of an email-open claim's key: ``id:<user_id>``, ``email:<email>``
    (lower-cased) or ``anon:<anonymous_id>``."""
    return f"{kind}:{value}"


def email_opens(workspace_id: str, user_key: str) -> str:
    """A user's accepted email opens (sorted set: ``message_id`` scored by event time in ms,
    pruned past the retention, expires)."""
    return f"{PREFIX}:{{{workspace_id}}}:opens:{user_key}"


def trigger_wakeups() -> str:
    """The channel (publish/subscribe, nothing stored) on which a worker tells the
    deliverers that it committed new triggers."""
    return f"{PREFIX}:triggers:wakeup"


def key_rotations() -> str:
    """The channel (publish/subscribe, nothing stored) on which ``sluice workspace
    rotate-key`` tells the gateways to look a workspace's write keys up again (message: the
    workspace id)."""
    return f"{PREFIX}:keys:rotated"


def journal() -> str:
    """Every queued batch until a worker has committed it (hash: batch id → the envelope's
    JSON, zlib-compressed; docs/reliability.md #1)."""
    return f"{PREFIX}:journal"


def journal_seen() -> str:
    """When each journaled batch was last published or taken by a worker (sorted set: batch
    id scored by Unix time)."""
    return f"{PREFIX}:journal:seen"


def journal_sweep_lock() -> str:
    """Held by the worker that sweeps the journal for lost batches this interval (string,
    expires)."""
    return f"{PREFIX}:journal-sweep"


def metric(family: str) -> str:
    """One cluster-wide metric family, named as ``/metrics`` shows it (hash: each field the
    JSON array of a series' label values → its count; a histogram's arrays end with a
    bucket's upper bound, or ``sum``, the field's value then a float; docs/metrics.md)."""
    return f"{PREFIX}:metrics:{family}"


RATE_LIMIT_PREFIX = f"{PREFIX}:ratelimit"
RATE_LIMIT_NAMESPACE = "events"


def rate_limit_windows(workspace_id: str, events_per_window: int, window_s: int) -> tuple[str, str]:
    """A workspace's event budget (``sluice.gateway.rate_limit``): the current and the
    previous window's counts of a sliding-window counter (integers, expiring after two
    windows). The ``limits`` library writes them, from ``RATE_LIMIT_PREFIX`` and
    ``RATE_LIMIT_NAMESPACE``; this is their format. A new limit starts a new count."""
    current = (
        f"{RATE_LIMIT_PREFIX}:{{{RATE_LIMIT_NAMESPACE}/{workspace_id}/"
        f"{events_per_window}/{window_s}/second}}"
    )
    return current, f"{current}/-1"


def retention_sweep_lock() -> str:
    """Held by the worker that applies the retention this interval, so that one purges at
    a time (string: the holder's random token, expires; extended while its purge runs)."""
    return f"{PREFIX}:retention-sweep"


def known_workspaces() -> str:
    """The ids of the workspaces that exist (set; the member ``""`` keeps it present when
    none does), for ``EventClient`` to refuse an unknown one (``sluice.producer.workspace_ids``)."""
    return f"{PREFIX}:workspaces:known"
