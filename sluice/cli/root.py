"""The root of the ``sluice`` command (docs/architecture.md §9): its global options, and every
command group and command under it, one module each. Each subcommand reads the settings once."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sluice.cli import (
    apply,
    audit,
    automations,
    checks,
    contacts,
    definitions,
    deliveries,
    devenv,
    dlq,
    events,
    migrate,
    processes,
    purge,
    stats,
    tokens,
    workspaces,
)
from sluice.settings import Settings

COMMANDS: tuple[click.Command, ...] = (
    migrate.migrate,
    workspaces.workspace,
    definitions.definition,
    automations.automation,
    deliveries.deliveries,
    stats.stats,
    processes.gateway,
    processes.worker,
    processes.deliverer,
    processes.flower,
    processes.dev,
    checks.check,
    dlq.dlq,
    contacts.contact,
    purge.purge,
    events.events,
    tokens.token,
    audit.audit,
    apply.apply_file,
)


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Python log level.")
@click.option(
    "--dev-dir",
    type=click.Path(path_type=Path),
    default=devenv.DEFAULT_DIR,
    show_default=True,
    envvar=devenv.DIR_VARIABLE,
    help="The data directory of `sluice dev`: with no SLUICE_*_URL variable set, commands "
    "use its database and Redis (from its dev.env).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str, dev_dir: Path) -> None:
    """Sluice: event ingestion for marketing automation."""
    from sluice.logs import configure_logging

    if ctx.invoked_subcommand != "dev":  # the stack itself writes the file
        used = devenv.apply(os.environ, dev_dir)
        if used is not None:
            click.echo(f"sluice: using the dev stack's database and Redis ({used})", err=True)
    configure_logging(Settings().log_format, log_level.upper())  # SLUICE_LOG_FORMAT


for command in COMMANDS:
    main.add_command(command)
