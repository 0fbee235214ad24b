"""``sluice purge``: delete a workspace's events older than a moment in event time, with
their outcomes and triggers, in bounded transactions (docs/data-lifecycle.md, "Retention")."""

from __future__ import annotations

import json

import click

from sluice.cli.options import database_engine, json_option, parse_instant
from sluice.settings import Settings


@click.command()
@click.argument("workspace_id")
@click.option(
    "--before",
    required=True,
    metavar="ISO8601",
    help="Delete the events whose event time is before this (UTC unless it says a zone).",
)
@click.option(
    "--batch",
    "batch_events",
    type=click.IntRange(1, 50_000),
    default=None,
    help="Events per transaction [default: SLUICE_RETENTION_BATCH_EVENTS].",
)
@click.option(
    "--pause-ms",
    type=click.FloatRange(0),
    default=20.0,
    show_default=True,
    help="Pause between transactions, so that ingestion keeps its speed.",
)
@json_option
def purge(
    workspace_id: str, before: str, batch_events: int | None, pause_ms: float, as_json: bool
) -> None:
    """Delete WORKSPACE_ID's events older than --before (event time) with their outcomes,
    repeats, triggers and delivery attempts, and the outcomes of its discarded and rejected
    events decided before then (they have no event time). Prints the rows removed per
    table and the speed."""
    import time

    from sqlalchemy import select

    from sluice.ops.retention import TABLES, purge_before
    from sluice.store.schema import workspaces

    cutoff = parse_instant(before, "--before")
    assert cutoff is not None  # a required option
    settings = Settings()
    engine = database_engine(settings)
    with engine.connect() as conn:
        found = conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id))
        if found.first() is None:
            raise click.ClickException(f"no workspace {workspace_id!r}")

    def pause() -> bool:
        time.sleep(pause_ms / 1000)
        return True

    report = purge_before(
        engine,
        workspace_id,
        cutoff,
        batch_events=batch_events or settings.retention_batch_events,
        between_batches=pause,
    )
    engine.dispose()
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    click.echo(f"purged workspace {workspace_id} before {cutoff.isoformat()}")
    for table in TABLES:
        click.echo(f"  {table:<18} {report.removed.get(table, 0):>10}")
    click.echo(
        f"  {report.rows} rows in {report.elapsed_s:.1f} s ({report.rows_per_s:.0f} rows/s), "
        f"{report.transactions} transactions, the longest "
        f"{report.longest_transaction_s * 1000:.0f} ms"
    )
    if report.open_triggers_deleted:
        click.echo(
            f"  {report.open_triggers_deleted} undelivered triggers deleted with their events"
        )
    if report.events_kept_for_attempts:
        click.echo(
            f"  {report.events_kept_for_attempts} events kept: an attempt of their trigger was "
            "under way; purge again to remove them"
        )
