"""``sluice deliveries``: the newest delivery attempts of the automations' triggers
(docs/automations.md)."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option


@click.command()
@click.argument("workspace_id", required=False)
@click.option("--automation", "automation_id", default=None, help="Only this automation.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@json_option
def deliveries(
    workspace_id: str | None, automation_id: str | None, limit: int, as_json: bool
) -> None:
    """The most recent delivery attempts: result, HTTP status, latency, error."""
    from sluice.store.views import recent_attempts

    found = recent_attempts(database_engine(), workspace_id, automation_id, limit)
    if as_json:
        click.echo(json.dumps(found))
        return
    for item in found:
        status = item["status_code"] if item["status_code"] is not None else "-"
        click.echo(
            f"{item['started_at']}  {item['trigger_id']}  attempt {item['attempt']}  "
            f"{item['result']:<9} {status}  {item['latency_ms']} ms  "
            f"{item['error'] or ''}".rstrip()
        )
