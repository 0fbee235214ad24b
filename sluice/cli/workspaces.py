"""``sluice workspace``: create, configure and list workspaces, and rotate their write keys
(docs/data-lifecycle.md, Write keys: rotation and the workspace list)."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option
from sluice.settings import Settings

NOTICE_TIMEOUT_S = 2.0


@click.group()
def workspace() -> None:
    """Manage workspaces."""


@workspace.command("create")
@click.argument("name")
@json_option
def workspace_create(name: str, as_json: bool) -> None:
    """Create a workspace and print its id and write key (shown only this once)."""
    import redis

    from sluice.ops.known_workspaces import create_known_workspace

    settings = Settings()
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=NOTICE_TIMEOUT_S, socket_connect_timeout=NOTICE_TIMEOUT_S
    )
    with client:
        try:
            created, known = create_known_workspace(database_engine(settings), client, name)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    if not known:  # EventClient's check of its workspace id (sluice.producer.workspace_ids)
        click.echo(
            "sluice: the new workspace is not yet known on Redis; EventClient refuses its id "
            "until a worker starts",
            err=True,
        )
    if as_json:
        click.echo(
            json.dumps({"workspace_id": created.workspace_id, "write_key": created.write_key})
        )
    else:
        click.echo(f"workspace_id: {created.workspace_id}\nwrite_key:    {created.write_key}")


@workspace.command("configure")
@click.argument("workspace_id")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
def workspace_configure(workspace_id: str, settings: tuple[str, ...]) -> None:
    """Override rule settings for one workspace, e.g. email_open_window_s=600 bot_mode=flag.

    Known keys: email_open_window_s, unknown_user_grace_s, bot_mode, rate_limit_per_s
    (events a second the gateways take; 0: no limit), retention_days (days of events
    kept, over SLUICE_RETENTION_DAYS; 0: keep everything). Workers and gateways pick
    changes up within 30 s.
    """
    from pydantic import ValidationError

    from sluice.store.workspaces import configure_workspace

    pairs = dict(item.partition("=")[::2] for item in settings)
    try:
        merged = configure_workspace(database_engine(), workspace_id, pairs)
    except (ValueError, LookupError, ValidationError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(merged, sort_keys=True))


@workspace.command("list")
@json_option
def workspace_list(as_json: bool) -> None:
    """List the workspaces: id, name, creation time, working keys and settings."""
    from sluice.store.write_keys import list_workspaces

    engine = database_engine()
    try:
        found = list_workspaces(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no workspaces")
        return
    for row in found:
        line = f"{row['workspace_id']}  {row['created_at']}  keys: {row['active_keys']}"
        if row["next_key_expires_at"] is not None:
            line += f" (one ends at {row['next_key_expires_at']})"
        if row["settings"]:
            line += f"  settings: {json.dumps(row['settings'], sort_keys=True)}"
        click.echo(f"{line}  {row['name']}")


@workspace.command("rotate-key")
@click.argument("workspace_id")
@click.option(
    "--grace-s",
    type=click.IntRange(min=0),
    default=86_400,
    show_default=True,
    help="Seconds the current keys keep working (0: they stop at once). A key that already "
    "has an end keeps it.",
)
@json_option
def workspace_rotate_key(workspace_id: str, grace_s: int, as_json: bool) -> None:
    """Give a workspace a new write key, printed only this once; its current keys stop
    working after the grace period (every route then answers 401)."""
    import redis

    from sluice.store.write_keys import announce_rotation, rotate_key

    settings = Settings()
    engine = database_engine(settings)
    try:
        rotated = rotate_key(engine, workspace_id, grace_s)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=NOTICE_TIMEOUT_S, socket_connect_timeout=NOTICE_TIMEOUT_S
    )
    with client:
        if not announce_rotation(client, workspace_id):
            click.echo(
                "sluice: the gateways were not told (Redis unreachable); they apply the new "
                f"end within SLUICE_KEY_CACHE_TTL_S ({settings.key_cache_ttl_s:g} s)",
                err=True,
            )
    ends = None if rotated.old_key_expires_at is None else rotated.old_key_expires_at.isoformat()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "workspace_id": rotated.workspace_id,
                    "write_key": rotated.write_key,
                    "old_key_expires_at": ends,
                }
            )
        )
    else:
        click.echo(
            f"workspace_id:       {rotated.workspace_id}\n"
            f"write_key:          {rotated.write_key}\n"
            f"old_key_expires_at: {ends or 'no old key works'}"
        )
