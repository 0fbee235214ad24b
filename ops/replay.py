"""Replaying dead letters (``sluice dlq replay``; docs/dead-letters.md).

A replay publishes the dead letter's batch again, as the gateway publishes a batch
(``Publisher.send``): with a Redis broker journaled first (``sluice.producer.journal``: a
lost message is published again by the journal sweep), then sent as the ingest task. Its
events carry a provisional rejection; outcomes are unique per message and a worker keeps the
first, so those rejections must be gone before a worker decides the events again. The
order that loses and doubles nothing:

1. journal the batch (Redis refuses: nothing changed, the dead letter stays open);
2. one transaction: claim the dead letter (``replayed_at`` set only where it is still null,
   so two replays cannot both publish) and delete its events' provisional rejections;
3. send the task. If that fails, the deleted rejections are inserted again and the claim is
   undone, so the dead letter stays open and replayable; if even that fails, the journal
   keeps the batch and the sweep publishes it.

Events that have a real verdict already (decided in another batch) are left out of the
replay, so they are neither decided again nor counted as repeats.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from sluice.producer.envelope import EncodedEnvelope, PoisonEnvelopeError, decode_envelope
from sluice.producer.errors import PublishError
from sluice.producer.events import Event, as_utc
from sluice.producer.publisher import Publisher
from sluice.store.dead_letters import (
    BATCH,
    batch_keys,
    decode_payload,
    is_provisional,
    replay_batch_id,
    replay_refusal,
)
from sluice.store.engine import by_workspace, insert_ignoring_conflicts, matches_any, writing
from sluice.store.schema import dead_letters, outcomes

Key = tuple[str, str]  # (workspace_id, message_id)
POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What became of one dead letter. ``status``: ``queued`` (published, verdicts not all
    in yet), ``decided`` (every event has a verdict), ``failed_again``,
    ``already_replayed``, ``already_decided`` (its events all had verdicts: nothing to
    publish), ``refused``, ``not_found``, ``publish_failed``."""

    id: int
    status: str
    message: str
    batch_id: str | None = None  # the batch it was replayed as
    events: int = 0  # the events with an identity it published
    decided: dict[str, int] = field(default_factory=dict)  # their verdicts, by status
    failed_again: dict[str, Any] | None = None  # {"id", "reason"} of the new dead letter
    keys: tuple[Key, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        del found["keys"]
        return found


class _Claimed(Exception):
    """Another replay claimed the dead letter first."""


class DeadLetterReplayer:
    def __init__(self, engine: Engine, publisher: Publisher) -> None:
        self.engine = engine
        self.publisher = publisher

    def open_ids(self) -> list[int]:
        """The dead letters ``--all`` replays: open batches, oldest first."""
        query = (
            select(dead_letters.c.id)
            .where(dead_letters.c.replayed_at.is_(None), dead_letters.c.kind == BATCH)
            .order_by(dead_letters.c.id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def replay(self, ids: Sequence[int], now: datetime) -> list[ReplayResult]:
        return [self._replay_one(letter_id, now) for letter_id in ids]

    def _replay_one(self, letter_id: int, now: datetime) -> ReplayResult:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(dead_letters).where(dead_letters.c.id == letter_id)
            ).one_or_none()
            if row is None:
                return ReplayResult(letter_id, "not_found", "no such dead letter")
            if row.replayed_at is not None:
                again = failed_again_of(conn, letter_id)
                when = as_utc(row.replayed_at).isoformat()
                tail = f"; it failed again: dead letter {again['id']}" if again else ""
                return ReplayResult(
                    letter_id,
                    "already_replayed",
                    f"already replayed as batch {row.replay_batch_id} at {when}, "
                    f"not published again{tail}",
                    batch_id=row.replay_batch_id,
                    failed_again=again,
                )
        payload, problem = decode_payload(row.payload)
        refusal = replay_refusal(row.kind, problem)
        if refusal is None and not isinstance(payload, dict):
            refusal = "the message is not a JSON object, so no worker can read it as a batch"
        if refusal is not None:
            return ReplayResult(letter_id, "refused", f"not replayable: {refusal}")
        batch_id = replay_batch_id(row.batch_id, letter_id)
        envelope, keys = self._without_decided(payload, batch_keys(payload))
        if envelope is None:
            return self._close(letter_id, now)
        envelope["batch_id"] = batch_id
        wire = orjson.dumps(envelope)
        removed: list[dict[str, Any]] = []  # the provisional rejections, to put back
        claimed: list[bool] = []

        def claim() -> None:  # step 2, once the batch is journaled
            with writing(self.engine) as conn:
                _claim(conn, letter_id, now, batch_id)
                removed.extend(_delete_provisional(conn, row.batch_id, keys))
            claimed.append(True)

        try:
            self.publisher.send(EncodedEnvelope(batch_id, wire), once_journaled=claim)
        except _Claimed:  # the journal entry is the other replay's now
            return ReplayResult(letter_id, "already_replayed", "replayed by someone else just now")
        except Exception as exc:
            if claimed:  # the queue refused it
                return self._undo(letter_id, batch_id, removed, exc)
            if isinstance(exc, SQLAlchemyError):  # journaled, not claimed
                self.publisher.forget(batch_id)  # else the sweep publishes it: harmless
            elif not isinstance(exc, PublishError):  # not the journal refusing it
                raise
            return ReplayResult(letter_id, "publish_failed", f"not published: {exc}")
        self.publisher.mark(_events_of(envelope))  # published: nothing after it undoes that
        return ReplayResult(
            letter_id,
            "queued",
            f"queued as batch {batch_id} ({len(keys)} events)",
            batch_id=batch_id,
            events=len(keys),
            keys=tuple(keys),
        )

    def _without_decided(
        self, payload: dict[str, Any], keys: list[Key]
    ) -> tuple[dict[str, Any] | None, list[Key]]:
        """The envelope without the events that have a real verdict already (None if that
        is all of them), and the keys of the events it keeps."""
        decided = set(decided_outcomes(self.engine, keys))
        if not decided:
            return dict(payload), keys
        kept = [
            raw
            for raw in payload.get("events") or []
            if not (isinstance(raw, dict) and _key(raw) in decided)
        ]
        if not kept:
            return None, []
        return {**payload, "events": kept}, [k for k in keys if k not in decided]

    def _close(self, letter_id: int, now: datetime) -> ReplayResult:
        with writing(self.engine) as conn, contextlib.suppress(_Claimed):
            _claim(conn, letter_id, now, None)
        return ReplayResult(
            letter_id,
            "already_decided",
            "its events all have verdicts already; marked replayed, nothing published",
        )

    def _undo(
        self, letter_id: int, batch_id: str, removed: list[dict[str, Any]], exc: Exception
    ) -> ReplayResult:
        try:
            with writing(self.engine) as conn:
                insert_ignoring_conflicts(conn, outcomes, removed)
                conn.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == letter_id)
                    .values(replayed_at=None, replay_batch_id=None)
                )
        except SQLAlchemyError as undo_exc:
            return ReplayResult(
                letter_id,
                "publish_failed",
                f"the queue did not take batch {batch_id} ({exc}), and the dead letter could "
                f"not be reopened ({undo_exc}); the journal keeps the batch and the journal "
                "sweep publishes it",
                batch_id=batch_id,
            )
        self.publisher.forget(batch_id)
        return ReplayResult(
            letter_id,
            "publish_failed",
            f"not published: {exc}; the dead letter stays open and its events keep their "
            "provisional rejection",
        )


def wait_for_verdicts(
    engine: Engine, results: Sequence[ReplayResult], timeout_s: float
) -> list[ReplayResult]:
    """Poll until every queued replay has a verdict for each of its events, or failed again
    as a new dead letter, or ``timeout_s`` passed; the results brought up to date."""
    deadline = time.monotonic() + timeout_s
    current = list(results)
    while True:
        current = [_progress(engine, r) if r.status == "queued" else r for r in current]
        if all(r.status != "queued" for r in current) or time.monotonic() >= deadline:
            return current
        time.sleep(POLL_S)


def _progress(engine: Engine, result: ReplayResult) -> ReplayResult:
    with engine.connect() as conn:
        again = failed_again_of(conn, result.id)
    if again is not None:
        return replace(
            result,
            status="failed_again",
            failed_again=again,
            message=f"failed again: dead letter {again['id']}, {again['reason']}",
        )
    verdicts = decided_outcomes(engine, result.keys)
    counts: dict[str, int] = {}
    for status in verdicts.values():
        counts[status] = counts.get(status, 0) + 1
    done = bool(result.keys) and len(verdicts) == len(result.keys)
    replayed = f"replayed as batch {result.batch_id}"
    if done:
        message = f"{replayed}, {len(verdicts)} events decided"
    elif result.keys:
        message = f"{replayed}, {len(verdicts)} of {result.events} events decided so far"
    else:  # poison: it can only fail again
        message = f"{replayed}, no verdict and no new dead letter yet"
    return replace(result, status="decided" if done else "queued", decided=counts, message=message)


def failed_again_of(conn: Connection, letter_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(dead_letters.c.id, dead_letters.c.reason)
        .where(dead_letters.c.replay_of == letter_id)
        .order_by(dead_letters.c.id)
        .limit(1)
    ).one_or_none()
    return None if row is None else {"id": row.id, "reason": row.reason}


def decided_outcomes(engine: Engine, keys: Sequence[Key]) -> dict[Key, str]:
    """The status of each of these events that has a real verdict (not a provisional one)."""
    found: dict[Key, str] = {}
    with engine.connect() as conn:
        for workspace_id, message_ids in by_workspace(keys).items():
            query = select(outcomes.c.message_id, outcomes.c.status).where(
                outcomes.c.workspace_id == workspace_id,
                matches_any(conn.dialect, outcomes.c.message_id, message_ids),
                ~is_provisional(),
            )
            for message_id, status in conn.execute(query):
                found[(workspace_id, message_id)] = status
    return found


def _claim(conn: Connection, letter_id: int, now: datetime, batch_id: str | None) -> None:
    claimed = conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == letter_id, dead_letters.c.replayed_at.is_(None))
        .values(replayed_at=now, replay_batch_id=batch_id)
    )
    if claimed.rowcount != 1:
        raise _Claimed


def _delete_provisional(
    conn: Connection, batch_id: str | None, keys: Sequence[Key]
) -> list[dict[str, Any]]:
    """Delete the provisional rejections of these events (recorded under the dead letter's
    batch id); the rows deleted, to put back if publishing fails."""
    if batch_id is None:
        return []
    columns = [c for c in outcomes.c if c.name != "id"]
    removed: list[dict[str, Any]] = []
    for workspace_id, message_ids in by_workspace(keys).items():
        deleted = conn.execute(
            outcomes.delete()
            .where(
                outcomes.c.workspace_id == workspace_id,
                matches_any(conn.dialect, outcomes.c.message_id, message_ids),
                outcomes.c.batch_id == batch_id,
                is_provisional(),
            )
            .returning(*columns)
        )
        removed += [{str(k): v for k, v in row._mapping.items()} for row in deleted]
    return removed


def _key(raw: dict[str, Any]) -> tuple[Any, Any]:
    return (raw.get("workspace_id"), raw.get("message_id"))


def _events_of(envelope: dict[str, Any]) -> list[Event]:
    try:
        return [i for i in decode_envelope(envelope).items if isinstance(i, Event)]
    except PoisonEnvelopeError:
        return []
