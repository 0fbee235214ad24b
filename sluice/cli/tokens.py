"""``sluice token``: create, list and revoke the bearer tokens of the control plane
(``/admin/v1``, docs/admin-api.md). The command line is the root of trust: it talks to the
database, and a token is shown only when it is created."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option


@click.group()
def token() -> None:
    """Manage the control plane's admin tokens."""


@token.command("create")
@click.option("--name", required=True, help="What the token is for (shown in lists, audit).")
@click.option(
    "--workspace",
    "workspace_ids",
    multiple=True,
    metavar="WORKSPACE_ID",
    help="Scope the token to this workspace (repeatable); without it, cluster-wide.",
)
@click.option("--read-only", is_flag=True, help="Reads only: every write answers 403.")
@click.option("--expires-in-s", type=int, help="Seconds until it stops working (default: never).")
@json_option
def token_create(
    name: str,
    workspace_ids: tuple[str, ...],
    read_only: bool,
    expires_in_s: int | None,
    as_json: bool,
) -> None:
    """Create a token and print it (shown only this once; it is stored hashed)."""
    from sluice.store.admin_tokens import create_token

    try:
        created = create_token(
            database_engine(),
            name,
            workspace_ids=workspace_ids,
            read_only=read_only,
            expires_in_s=expires_in_s,
        )
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    fields = created.fields()
    if as_json:
        click.echo(json.dumps(fields))
        return
    for key in ("token_id", "token", "workspaces", "read_only", "expires_at"):
        click.echo(f"{key + ':':12} {fields[key]}")


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """Every token, newest first (never the tokens themselves)."""
    from sluice.store.admin_tokens import list_tokens

    found = [info.fields() for info in list_tokens(database_engine())]
    if as_json:
        click.echo(json.dumps(found))
        return
    for fields in found:
        state = "revoked" if fields["revoked_at"] else "active"
        scope = (
            fields["workspaces"] if fields["workspaces"] == "*" else ",".join(fields["workspaces"])
        )
        mode = "read-only" if fields["read_only"] else "read-write"
        click.echo(f"{fields['token_id']}  {state:7}  {mode:10}  {scope}  {fields['name']}")


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token: it stops working at once, on every gateway."""
    from sluice.store.admin_tokens import revoke_token

    if not revoke_token(database_engine(), token_id):
        raise click.ClickException(f"no active token {token_id!r}")
    click.echo(f"revoked {token_id}")
