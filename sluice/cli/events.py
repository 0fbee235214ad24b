"""``sluice events``: a workspace's events with their outcomes (docs/data-lifecycle.md,
"Export")."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO

import click

from sluice.cli.options import database_engine, parse_instant

STATUSES = ("accepted", "discarded", "rejected")
QUEUED_HELP = (
    "queued events are not in the database: they wait in Redis until a worker decides them "
    "(GET /v1/events/{id} shows one); export them once decided"
)


@click.group()
def events() -> None:
    """A workspace's events and their outcomes."""


@events.command("export")
@click.argument("workspace_id")
@click.option("--since", default=None, metavar="T", help="From this time on (ISO 8601, inclusive).")
@click.option("--until", default=None, metavar="T", help="Before this time (ISO 8601, exclusive).")
@click.option(
    "--status",
    default=None,
    metavar="S",
    help="Only events with this outcome: accepted, discarded or rejected.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N lines.")
@click.option(
    "--triggers",
    "with_triggers",
    is_flag=True,
    help="Add each event's triggers, as GET /v1/events/{id} shows them.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Accepted for uniformity: the output is NDJSON."
)
def export(
    workspace_id: str,
    since: str | None,
    until: str | None,
    status: str | None,
    limit: int | None,
    with_triggers: bool,
    as_json: bool,
) -> None:
    """Write WORKSPACE_ID's events as NDJSON to stdout, one line per event with its outcome,
    ordered by event time. Discarded and rejected events, which were not stored, come with
    the raw copy their outcome keeps and are placed (and filtered by --since/--until) by the
    time they were decided. Times without a zone are UTC."""
    from sqlalchemy.exc import DBAPIError

    from sluice.ops.export import ExportSelection, UnknownWorkspaceError, export_ndjson
    from sluice.ops.health import short_reason
    from sluice.rules import Status

    selection = ExportSelection(
        workspace_id,
        since=parse_instant(since, "--since"),
        until=parse_instant(until, "--until"),
        status=Status(_status(status)) if status is not None else None,
        limit=limit,
        with_triggers=with_triggers,
    )
    if selection.since and selection.until and selection.since >= selection.until:
        raise click.ClickException("--since must be before --until")
    engine = database_engine()
    try:
        write_all(export_ndjson(engine, selection), sys.stdout.buffer)
    except UnknownWorkspaceError as exc:  # before any output
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:  # the lines written so far are whole
        reason = short_reason(exc.orig if exc.orig is not None else exc)
        raise click.ClickException(f"the export stopped: {reason}") from None
    finally:
        engine.dispose()


def write_all(chunks: Iterable[bytes], out: IO[bytes]) -> None:
    """Write and flush chunk by chunk; a reader that went away (``| head``) ends the export
    quietly, with status 0."""
    try:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        raise SystemExit(0) from None
    finally:
        close = getattr(chunks, "close", None)  # a generator: its cursor and connection
        if close is not None:
            close()


def _status(value: str) -> str:
    if value == "queued":
        raise click.ClickException(QUEUED_HELP)
    if value not in STATUSES:
        raise click.ClickException(f"--status: {value!r} is not one of {', '.join(STATUSES)}")
    return value
