"""``sluice apply FILE.yaml [--dry-run]``: workspaces, their settings, definitions and
automations declared in a file, applied idempotently (``sluice.ops.apply``,
docs/admin-api.md, Configuration as code)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sluice.cli.options import database_engine, json_option
from sluice.settings import Settings


@click.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@json_option
def apply_file(file: Path, dry_run: bool, as_json: bool) -> None:
    """Make the database hold what FILE declares (YAML); nothing it does not name is
    removed. Prints each change, and what was made that is shown once (write keys,
    webhook secrets)."""
    import yaml
    from pydantic import ValidationError

    from sluice.ops.apply import ApplyError, Declared, apply

    try:
        declared = Declared.model_validate(yaml.safe_load(file.read_text()))
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{file}: not YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise click.ClickException(f"{file}: {where}: {first['msg']}") from exc
    settings = Settings()
    try:
        plan = apply(
            database_engine(settings),
            declared,
            dry_run=dry_run,
            allow_private_webhooks=settings.allow_private_webhooks,
        )
    except ApplyError as exc:
        raise click.ClickException(f"{exc} (nothing was changed)") from exc
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, **plan.as_dict()}))
        return
    prefix = "would " if dry_run else ""
    for change in plan.changes:
        click.echo(f"{prefix}{change}")
    if not plan.changes:
        click.echo("nothing to change")
    for note in plan.notes:
        click.echo(f"note: {note}")
    for what, count in sorted(plan.left_alone.items()):
        click.echo(f"left alone: {count} {what} the file does not name")
    for made in plan.made:
        click.echo("made: " + json.dumps(made))
    if any("write_key" in made or "secret" in made for made in plan.made):
        click.echo("the write keys and secrets above are shown only this once")
