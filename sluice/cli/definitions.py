"""``sluice definition``: event definitions per workspace, Bunce events with typed parameters
and CleverTap business events with required properties (docs/api.md)."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option, parse_pairs


@click.group()
def definition() -> None:
    """Manage event definitions (Bunce events, CleverTap business events)."""


@definition.command("add")
@click.argument("workspace_id")
@click.option("--format", "format_", type=click.Choice(["bunce", "clevertap"]), required=True)
@click.option("--name", required=True, help="Event name (CleverTap: the business event).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY:TYPE",
    help="Bunce parameter: string, number, integer, boolean or timestamp.",
)
@click.option(
    "--required",
    "required",
    multiple=True,
    metavar="KEY",
    help="CleverTap property that every trigger must carry.",
)
@click.option(
    "--id",
    "definition_id",
    default=None,
    help="Keep this uuid as the id (e.g. an existing Bunce event_id).",
)
@json_option
def definition_add(
    workspace_id: str,
    format_: str,
    name: str,
    params: tuple[str, ...],
    required: tuple[str, ...],
    definition_id: str | None,
    as_json: bool,
) -> None:
    """Define an event; prints its id (Bunce's event_id)."""
    from sluice.store.definitions import add_definition

    typed = parse_pairs(params, ":", "--param", "KEY:TYPE")
    try:
        created = add_definition(
            database_engine(),
            workspace_id,
            "bunce" if format_ == "bunce" else "clevertap",
            name,
            params=typed,
            required=list(required),
            definition_id=definition_id,
        )
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"definition_id": created.definition_id}))
    else:
        click.echo(f"definition_id: {created.definition_id}")
