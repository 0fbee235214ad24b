"""``sluice migrate``: the database schema created or upgraded (``sluice.store.migrate``)."""

from __future__ import annotations

import click

from sluice.settings import Settings


@click.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic) to the newest revision."""
    from sluice.store.engine import make_engine
    from sluice.store.migrate import upgrade

    # Not options.database_engine: it refuses a database whose schema is not the newest.
    upgrade(make_engine(Settings().database_url))
    click.echo("database schema is up to date")
