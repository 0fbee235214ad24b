"""``sluice audit``: the control plane's writes, newest first (docs/admin-api.md, The
audit log)."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option


@click.command()
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def audit(limit: int, as_json: bool) -> None:
    """The control plane's writes, newest first: token, operation, path, status, time."""
    from sluice.store.admin_audit import audit_entries

    found = audit_entries(database_engine(), limit)
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no writes through the control plane")
    for entry in found:
        click.echo(
            f"{entry['at']}  {entry['token_id']}  {entry['outcome']}  "
            f"{entry['operation']}  {entry['target']}"
        )
