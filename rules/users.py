"""Who an event is about, and what it may do to users (docs/architecture.md §2 kinds table).

Policies: ``create`` makes the user if missing and sets traits (login/identify);
``require`` needs the user to exist, after a grace period for an update racing its user's
creation, and sets traits (update); ``none`` leaves users alone. An adapter whose vendor
creates users marks its events ``creates_user``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sluice.producer.events import Event, EventKind


class UserPolicy(StrEnum):
    CREATE = "create"
    REQUIRE = "require"
    NONE = "none"


DEFAULT_POLICY = {EventKind.LOGIN: UserPolicy.CREATE, EventKind.UPDATE: UserPolicy.REQUIRE}


def user_policy(event: Event) -> UserPolicy:
    """An update needs its user; an event that says it creates its user (``creates_user``,
    set by adapters) does; otherwise the kind decides."""
    if event.creates_user and event.kind is not EventKind.UPDATE:
        return UserPolicy.CREATE
    return DEFAULT_POLICY.get(event.kind, UserPolicy.NONE)


def grace_ends(event: Event, grace_s: int) -> datetime:
    """An unknown user is rejected only once this has passed (server time)."""
    return event.received_at + timedelta(seconds=grace_s)
