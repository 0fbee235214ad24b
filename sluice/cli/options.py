"""What the command groups share: the ``--json`` option, the checked database, and parsing of
``KEY=VALUE``-shaped and time options."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from sluice.producer.events import as_utc
from sluice.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def database_engine(settings: Settings | None = None) -> Engine:
    """The database, checked: reachable and migrated, or a one-line error saying what to do
    (``sluice.cli.database``). Every command but ``migrate`` and ``dev`` opens it here."""
    from sluice.cli.database import checked_engine

    return checked_engine((settings or Settings()).database_url)


def parse_pairs(items: tuple[str, ...], sep: str, option: str, shape: str) -> dict[str, str]:
    """``KEY<sep>VALUE`` options as a dict; a usage error names the malformed one."""
    pairs = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise click.BadParameter(f"{item!r} is not {shape}", param_hint=option)
        pairs[key] = value
    return pairs


def parse_instant(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date (midnight) or date-time, in UTC; without a zone it is UTC (the time
    options of ``sluice events export`` and ``sluice purge``)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(
            f"{option}: {value!r} is not an ISO 8601 time (e.g. 2026-11-30 or 2026-11-30T12:00:00Z)"
        ) from None
    return as_utc(parsed)
