"""``sluice contact``: erase a person (GDPR Art. 17, CCPA) and tell whether one was erased
(docs/data-lifecycle.md, Erasure). Operators only: over HTTP, only the control plane's
admin tokens erase (docs/admin-api.md), never a write key."""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING

import click

from sluice.cli.options import database_engine, json_option
from sluice.settings import Settings

if TYPE_CHECKING:
    from sluice.ops.erasure_match import IdentifierKind

email_option = click.option("--email", default=None, help="The person's email (any case).")
user_id_option = click.option("--user-id", default=None, help="The person's user id.")


def _identifier(email: str | None, user_id: str | None) -> tuple[IdentifierKind, str]:
    if (email is None) == (user_id is None):
        raise click.UsageError("give exactly one of --email E, --user-id U")
    if email is not None:
        if not email.strip():
            raise click.BadParameter("must not be empty", param_hint="--email")
        return "email", email
    assert user_id is not None
    if not user_id:
        raise click.BadParameter("must not be empty", param_hint="--user-id")
    return "user_id", user_id


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "unknown"


@click.group()
def contact() -> None:
    """Contacts: erase a person and everything stored of them."""


@contact.command("delete")
@click.argument("workspace_id")
@email_option
@user_id_option
@click.option(
    "--requested-by",
    default=None,
    help="Who asked for the erasure (kept in its record) [default: the OS user name].",
)
@click.option(
    "--lease-wait-s",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="How long to wait for the person's webhooks being delivered at this moment.",
)
@json_option
def contact_delete(
    workspace_id: str,
    email: str | None,
    user_id: str | None,
    requested_by: str | None,
    lease_wait_s: float,
    as_json: bool,
) -> None:
    """Erase a person: the contact, its events (stored, discarded or rejected), their
    outcomes, repeats, order claims, triggers and delivery attempts, their events in dead
    letters, and their Redis claims and marks. Recorded in `erasures` without the
    identifier in clear. Events sent later are stored anew: stop sending them first."""
    import redis

    from sluice.ops.erasure import ErasureIncompleteError, erase_contact

    kind, identifier = _identifier(email, user_id)
    settings = Settings()
    engine = database_engine(settings)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        report = erase_contact(
            engine,
            client,
            workspace_id,
            kind,
            identifier,
            requested_by=requested_by or _os_user(),
            lease_wait_s=lease_wait_s,
        )
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    except ErasureIncompleteError as exc:
        raise click.ClickException(str(exc)) from exc
    except redis.RedisError as exc:
        raise click.ClickException(
            f"Redis does not answer ({exc}); the erasure stopped before its end: run the "
            "same command again once Redis is back"
        ) from exc
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    click.echo(
        f"erasure {report.erasure_id}: workspace {report.workspace_id}, by "
        f"{report.identifier_kind}, subject {report.subject}"
    )
    click.echo(f"requested by {report.requested_by} at {report.erased_at.isoformat()}")
    for name, count in report.removed.items():
        click.echo(f"  {name + ':':<21}{count}")


@contact.command("erasures")
@click.argument("workspace_id")
@email_option
@user_id_option
@json_option
def contact_erasures(
    workspace_id: str, email: str | None, user_id: str | None, as_json: bool
) -> None:
    """Whether this email or user id was erased: the erasures recorded for it."""
    from sluice.ops.erasure import erasures_of

    kind, identifier = _identifier(email, user_id)
    found = erasures_of(database_engine(), workspace_id, kind, identifier)
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no erasure recorded for this identifier")
    for item in found:
        total = sum(item["removed"].values())
        click.echo(
            f"erasure {item['erasure_id']}  {item['erased_at']}  by {item['requested_by']}  "
            f"{total} rows and keys removed"
        )
