"""``sluice automation``: what an accepted event fires, listed with its triggers, and
disabled (docs/automations.md)."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option, parse_pairs
from sluice.settings import Settings

OPERATOR_REASON = "disabled by an operator"


@click.group()
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


@automation.command("show")
@click.argument("automation_id")
def automation_show(automation_id: str) -> None:
    """One automation, with its triggers counted by status, as JSON."""
    from sluice.store.automations import show_automation

    found = show_automation(database_engine(), None, automation_id)
    if found is None:
        raise click.ClickException(f"no automation {automation_id!r}")
    click.echo(json.dumps(found))


@automation.command("disable")
@click.argument("automation_id")
def automation_disable(automation_id: str) -> None:
    """Disable an automation: it fires nothing more, and its pending deliveries are cancelled."""
    from sluice.store.automations import disable_in_workspace

    if not disable_in_workspace(database_engine(), None, automation_id, OPERATOR_REASON):
        raise click.ClickException(f"no active automation {automation_id!r}")
    click.echo(f"{automation_id} disabled")


@automation.command("enable")
@click.argument("automation_id")
def automation_enable(automation_id: str) -> None:
    """Enable a disabled automation again (it fires from its next matching event)."""
    from sluice.store.automations import enable_automation

    if not enable_automation(database_engine(), None, automation_id):
        raise click.ClickException(f"no disabled automation {automation_id!r}")
    click.echo(f"{automation_id} enabled")


@automation.command("delete")
@click.argument("automation_id")
def automation_delete(automation_id: str) -> None:
    """Delete an automation, with its triggers and their attempts."""
    from sluice.store.automations import delete_automation

    if not delete_automation(database_engine(), None, automation_id):
        raise click.ClickException(f"no automation {automation_id!r}")
    click.echo(f"{automation_id} deleted")


@automation.command("rotate-secret")
@click.argument("automation_id")
@json_option
def automation_rotate_secret(automation_id: str, as_json: bool) -> None:
    """A new signing secret for a webhook automation (shown once; used from its next
    attempt on)."""
    from sluice.store.automations import rotate_secret

    try:
        secret = rotate_secret(database_engine(), None, automation_id)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if secret is None:
        raise click.ClickException(f"no automation {automation_id!r}")
    if as_json:
        click.echo(json.dumps({"automation_id": automation_id, "secret": secret}))
    else:
        click.echo(f"secret: {secret}   (shown once)")
