"""``sluice dlq``: list, show and replay dead letters (docs/dead-letters.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from sluice.cli.options import database_engine, json_option
from sluice.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sluice.ops.replay import DeadLetterReplayer, ReplayResult

DEFAULT_WAIT_S = 30.0
# Statuses after which the command exits 1: the events did not get their verdicts.
FAILED = {"failed_again", "refused", "not_found", "publish_failed"}


@click.group()
def dlq() -> None:
    """Dead letters: batches a worker gave up on, kept whole to be shown and replayed."""


@dlq.command("list")
@click.argument("workspace_id", required=False)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def dlq_list(workspace_id: str | None, limit: int, as_json: bool) -> None:
    """The newest dead letters first (those with events of WORKSPACE_ID, if given)."""
    from sluice.store.dead_letters import list_dead_letters

    found = list_dead_letters(database_engine(), workspace_id, limit)
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no dead letters")
    for item in found:
        events = "?" if item["events"] is None else item["events"]
        state = f"replayed as {item['replay_batch_id']}" if item["status"] == "replayed" else "open"
        again = f"  (failed replay of {item['replay_of']})" if item["replay_of"] else ""
        click.echo(
            f"{item['id']}  {item['created_at']}  {item['kind']} {item['batch_id'] or '-'}  "
            f"{events} events  {','.join(item['workspaces']) or '-'}  {state}  "
            f"{item['reason']}{again}"
        )


@dlq.command("show")
@click.argument("dead_letter_id", type=int)
@json_option
def dlq_show(dead_letter_id: int, as_json: bool) -> None:
    """Everything about one dead letter: the error's detail and the message decoded."""
    from sluice.store.dead_letters import show_dead_letter

    found = show_dead_letter(database_engine(), dead_letter_id)
    if found is None:
        raise click.ClickException(f"no dead letter {dead_letter_id}")
    if as_json:
        click.echo(json.dumps(found))
        return
    for key in (
        "id",
        "kind",
        "reason",
        "batch_id",
        "events",
        "workspaces",
        "created_at",
        "status",
        "replayed_at",
        "replay_batch_id",
        "replay_of",
        "replayable",
    ):
        click.echo(f"{key + ':':<17}{_text(found[key])}")
    for again in found["failed_again_as"]:
        click.echo(f"{'failed again as:':<17}dead letter {again['id']}, {again['reason']}")
    if found["payload_error"]:
        click.echo(f"{'payload error:':<17}{found['payload_error']}")
    click.echo("detail:")
    click.echo(found["detail"] or "-")
    click.echo("payload:")
    payload = found["payload"]
    click.echo(payload if isinstance(payload, str) else json.dumps(payload, indent=2))


@dlq.command("replay")
@click.argument("dead_letter_ids", nargs=-1, type=int, metavar="ID...")
@click.option("--all", "replay_all", is_flag=True, help="Replay every open dead letter batch.")
@click.option(
    "--wait-s",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="How long to wait for the replayed events' verdicts.",
)
@click.option("--no-wait", is_flag=True, help="Publish and return (same as --wait-s 0).")
@json_option
def dlq_replay(
    dead_letter_ids: tuple[int, ...],
    replay_all: bool,
    wait_s: float,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Publish dead-lettered batches again: their events are decided anew. A dead letter is
    replayed once; replaying it again publishes nothing. Exits 1 if a batch failed again or
    could not be replayed."""
    from sluice.ops.replay import wait_for_verdicts
    from sluice.producer.events import utc_now

    if replay_all == bool(dead_letter_ids):
        raise click.UsageError("give dead letter ids, or --all")
    settings = Settings()
    engine = database_engine(settings)
    with _replayer(settings, engine) as replayer:
        ids = replayer.open_ids() if replay_all else list(dict.fromkeys(dead_letter_ids))
        results = replayer.replay(ids, utc_now())
    if not no_wait and wait_s > 0:
        results = wait_for_verdicts(engine, results, wait_s)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results]))
    else:
        if not results:
            click.echo("no open dead letters")
        for result in results:
            click.echo(_replay_line(result))
    if any(r.status in FAILED for r in results):
        raise SystemExit(1)


@contextmanager
def _replayer(settings: Settings, engine: Engine) -> Iterator[DeadLetterReplayer]:
    """A replayer that publishes as every producer does (``open_publisher``): journaled in
    Redis, then the ingest task on the broker."""
    import redis

    from sluice.ops.replay import DeadLetterReplayer
    from sluice.publishing import settings_publisher

    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.publish_timeout_s,
        socket_connect_timeout=settings.publish_timeout_s,
    )
    publisher = settings_publisher(settings, client)
    try:
        yield DeadLetterReplayer(engine, publisher)
    finally:
        publisher.close()
        client.close()


def _replay_line(result: ReplayResult) -> str:
    line = f"dead letter {result.id}: {result.message}"
    if result.decided:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(result.decided.items()))
        line += f": {counts}"
    return line


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)
