"""``sluice stats``: outcome counts by status and reason, and dead letters, per workspace
(``sluice.ops.stats``)."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option


@click.command()
@click.argument("workspace_id", required=False)
@json_option
def stats(workspace_id: str | None, as_json: bool) -> None:
    """Outcome counts by status and reason, and dead letters, for one workspace or all."""
    from sluice.ops.stats import outcome_counts

    counts = outcome_counts(database_engine(), workspace_id)
    if as_json:
        click.echo(json.dumps(counts, sort_keys=True))
        return
    sections = (
        {workspace_id: counts} if workspace_id else {"all": counts["total"], **counts["workspaces"]}
    )
    letters = counts.get("dead_letters") or {}
    letters_of = (
        {workspace_id: letters} if workspace_id else {"all": letters, **letters["workspaces"]}
    )
    for name, section in sections.items():
        click.echo(
            f"{name}: {section['events']} events, {section['accepted']} accepted "
            f"({section['flagged_bot']} flagged as bots)"
        )
        for status in ("discarded", "rejected"):
            for reason, count in sorted(section[status].items()):
                click.echo(f"  {status} {reason}: {count}")
        if letters_of.get(name, {}).get("total"):
            dead = letters_of[name]
            click.echo(
                f"  dead letters: {dead['total']} ({dead['open']} open, "
                f"{dead['replayed']} replayed; sluice dlq list)"
            )
