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


@definition.command("list")
@click.argument("workspace_id")
@json_option
def definition_list(workspace_id: str, as_json: bool) -> None:
    """The workspace's definitions, newest first."""
    from sluice.store.definitions import list_definitions

    found = list_definitions(database_engine(), workspace_id)
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no definitions")
    for item in found:
        shape = item["params"] if item["format"] == "bunce" else item["required"]
        click.echo(
            f"{item['definition_id']}  {item['format']:9}  {item['name']}  {json.dumps(shape)}"
        )


@definition.command("show")
@click.argument("workspace_id")
@click.argument("definition_id")
def definition_show(workspace_id: str, definition_id: str) -> None:
    """One definition, as JSON."""
    from sluice.store.definitions import show_definition

    found = show_definition(database_engine(), workspace_id, definition_id)
    if found is None:
        raise click.ClickException(f"no definition {definition_id!r} in {workspace_id!r}")
    click.echo(json.dumps(found))


@definition.command("delete")
@click.argument("workspace_id")
@click.argument("definition_id")
def definition_delete(workspace_id: str, definition_id: str) -> None:
    """Delete a definition (gateways stop accepting its events within 30 s)."""
    from sluice.store.definitions import delete_definition

    if not delete_definition(database_engine(), workspace_id, definition_id):
        raise click.ClickException(f"no definition {definition_id!r} in {workspace_id!r}")
    click.echo(f"deleted {definition_id}")
