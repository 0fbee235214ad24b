"""Who an event is about, and what it may do to users (docs/architecture.md §2 kinds table).

Policies: ``create`` makes the user if missing and sets traits (login/identify);
``require`` needs the user to exist, after a grace period for an update racing its user's
creation, and sets traits (update); ``none`` leaves users alone. Sources may override per
kind (vendor adapters whose API creates users).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sluice.producer.events import Event, EventKind
from sluice.rules.ports import Identity


class UserPolicy(StrEnum):
    CREATE = "create"
    REQUIRE = "require"
    NONE = "none"


DEFAULT_POLICY = {EventKind.LOGIN: UserPolicy.CREATE, EventKind.UPDATE: UserPolicy.REQUIRE}
SOURCE_POLICY: dict[str, dict[EventKind, UserPolicy]] = {
    # Bento documents that its events create users that do not exist yet.
    "bento": {EventKind.CUSTOM: UserPolicy.CREATE, EventKind.CONFIRMATION: UserPolicy.CREATE},
}


def user_policy(event: Event) -> UserPolicy:
    by_kind = SOURCE_POLICY.get(event.source, {})
    return by_kind.get(event.kind, DEFAULT_POLICY.get(event.kind, UserPolicy.NONE))


def identities(event: Event) -> list[Identity]:
    """The identities that name the event's user; emails compare case-insensitively."""
    found: list[Identity] = []
    if event.user_id:
        found.append(("id", event.user_id))
    if event.email:
        found.append(("email", event.email.lower()))
    return found


def grace_ends(event: Event, grace_s: int) -> datetime:
    """An unknown user is rejected only once this has passed (server time)."""
    return event.received_at + timedelta(seconds=grace_s)
