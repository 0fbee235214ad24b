"""Dead letters are kept whole, listed, shown and replayed (real Redis and database; the
replay's task message is handed to the ingest task in-process, as a worker would run it)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, insert, select

from sluice.ops.replay import (
    DeadLetterReplayer,
    ReplayResult,
    wait_for_verdicts,
)
from sluice.ops.stats import outcome_counts
from sluice.producer import keys
from sluice.producer.envelope import Envelope, Outgoing, decode_envelope
from sluice.producer.events import Event, utc_now
from sluice.producer.publisher import Publisher
from sluice.store.dead_letters import (
    dead_letter_counts,
    list_dead_letters,
    replay_batch_id,
    show_dead_letter,
)
from sluice.store.schema import dead_letters, events, outcomes
from sluice.store.workspaces import create_workspace
from sluice.worker.runtime import Runtime
from sluice.worker.tasks import handle_batch
from tests.component.test_ingest_task import FakeTask, Request


class Published:
    """Stands in for the broker (a transport): keeps the task messages, and fails on
    demand."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail = False
        self.seen_outcomes: list[dict[str, tuple[str, str | None]]] = []
        self.engine: Engine | None = None
        self.workspace_id = ""

    def publish(self, envelope: Outgoing) -> None:
        message = envelope.task_message()
        if self.fail:
            raise ConnectionError("broker down")
        if self.engine is not None:  # what a worker taking it at once would find
            self.seen_outcomes.append(outcomes_of(self.engine, self.workspace_id))
        self.messages.append(message)

    def close(self) -> None:
        pass

    def deliver_all(self, runtime: Runtime) -> None:
        """Run the published messages through the ingest task, as a worker would."""
        while self.messages:
            message = self.messages.pop(0)
            payload = sent_payload(message)
            handle_batch(FakeTask(Request(id=message["task_id"])), runtime, payload)  # type: ignore[arg-type]


def sent_payload(message: dict[str, Any]) -> Any:
    return orjson.loads(orjson.dumps(message["args"][0]))  # the task's argument, a Fragment


def outcomes_of(engine: Engine, workspace_id: str) -> dict[str, tuple[str, str | None]]:
    query = select(outcomes.c.message_id, outcomes.c.status, outcomes.c.detail).where(
        outcomes.c.workspace_id == workspace_id
    )
    with engine.connect() as conn:
        return {row.message_id: (row.status, row.detail) for row in conn.execute(query)}


def failing_batch(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch, events_n: int = 2
) -> tuple[str, list[str], int]:
    """A batch whose storing fails with a bug, dead-lettered; (workspace, ids, letter id)."""
    workspace = create_workspace(engine, "dead-letters").workspace_id
    envelope = Envelope(
        events=[
            Event(workspace_id=workspace, kind="custom", name="E", user_id=f"u{i}")
            for i in range(events_n)
        ]
    )
    wire = envelope.model_dump(mode="json")

    def bug(*_args: object, **_kwargs: object) -> None:
        raise KeyError("surprise")

    with monkeypatch.context() as patch:
        patch.setattr(runtime.store, "record_batch", bug)
        handle_batch(FakeTask(Request(id=envelope.batch_id)), runtime, wire)  # type: ignore[arg-type]
    letter = list_dead_letters(engine, workspace)[0]
    return workspace, [e.message_id for e in envelope.events], int(letter["id"])


def replayer(runtime: Runtime, publish: Published) -> DeadLetterReplayer:
    return DeadLetterReplayer(runtime.store.engine, Publisher(publish, journal=runtime.journal))


def test_a_fixed_batch_is_replayed_to_real_verdicts_once(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, message_ids, letter_id = failing_batch(runtime, engine, monkeypatch)
    note = f"not processed: unexpected error: KeyError; dead letter {letter_id} "
    note += f"(sluice dlq show {letter_id})"
    assert outcomes_of(engine, workspace) == {m: ("rejected", note) for m in message_ids}
    [listed] = list_dead_letters(engine, workspace)
    assert {k: listed[k] for k in ("id", "reason", "events", "workspaces", "status")} == {
        "id": letter_id,
        "reason": "unexpected error: KeyError",
        "events": 2,
        "workspaces": [workspace],
        "status": "open",
    }
    shown = show_dead_letter(engine, letter_id)
    assert shown is not None and shown["replayable"] is True
    assert "KeyError: 'surprise'" in shown["detail"]
    assert [e["message_id"] for e in shown["payload"]["events"]] == message_ids
    assert dead_letter_counts(engine, workspace) == {"total": 1, "open": 1, "replayed": 0}

    publish = Published()
    publish.engine, publish.workspace_id = engine, workspace
    [queued] = replayer(runtime, publish).replay([letter_id], utc_now())
    batch_id = replay_batch_id(shown["batch_id"], letter_id)
    assert (queued.status, queued.batch_id, queued.events) == ("queued", batch_id, 2)
    assert publish.seen_outcomes == [{}]  # the provisional rejections went first
    assert runtime.redis.hexists(keys.journal(), batch_id)  # the journal sweep's safety net
    publish.deliver_all(runtime)

    [done] = wait_for_verdicts(engine, [queued], timeout_s=5)
    assert (done.status, done.decided) == ("decided", {"accepted": 2})
    assert outcomes_of(engine, workspace) == {m: ("accepted", None) for m in message_ids}
    assert not runtime.redis.hexists(keys.journal(), batch_id)  # committed: forgotten
    [again] = replayer(runtime, publish).replay([letter_id], utc_now())
    assert again.status == "already_replayed" and batch_id in again.message
    assert publish.messages == []
    with engine.connect() as conn:
        stored = conn.execute(select(events.c.message_id).where(events.c.workspace_id == workspace))
        assert sorted(stored.scalars()) == sorted(message_ids)
    assert list_dead_letters(engine, workspace)[0]["replay_batch_id"] == batch_id
    assert outcome_counts(engine, workspace)["dead_letters"] == {
        "total": 1,
        "open": 0,
        "replayed": 1,
    }


def test_a_replay_the_queue_refuses_leaves_the_dead_letter_open_and_replayable(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, message_ids, letter_id = failing_batch(runtime, engine, monkeypatch)
    provisional = outcomes_of(engine, workspace)
    publish = Published()
    publish.fail = True
    [failed] = replayer(runtime, publish).replay([letter_id], utc_now())
    assert failed.status == "publish_failed" and "broker down" in failed.message
    assert "stays open" in failed.message
    assert outcomes_of(engine, workspace) == provisional
    assert list_dead_letters(engine, workspace)[0]["status"] == "open"
    assert runtime.redis.hlen(keys.journal()) == 0

    publish.fail = False
    [queued] = replayer(runtime, publish).replay([letter_id], utc_now())
    publish.deliver_all(runtime)
    [done] = wait_for_verdicts(engine, [queued], timeout_s=5)
    assert (done.status, done.decided) == ("decided", {"accepted": len(message_ids)})


def test_poison_replayed_fails_again_as_a_linked_dead_letter(
    runtime: Runtime, engine: Engine
) -> None:
    poison = {"v": 99, "batch_id": f"poison-{utc_now().timestamp()}", "events": [{}]}
    handle_batch(FakeTask(Request(id=poison["batch_id"])), runtime, poison)  # type: ignore[arg-type]
    with engine.connect() as conn:
        letter_id = conn.execute(
            select(dead_letters.c.id).where(dead_letters.c.batch_id == poison["batch_id"])
        ).scalar_one()
    shown = show_dead_letter(engine, letter_id)
    assert shown is not None
    assert (shown["events"], shown["workspaces"], shown["payload"]) == (None, [], poison)

    publish = Published()
    [queued] = replayer(runtime, publish).replay([letter_id], utc_now())
    assert queued.status == "queued"
    publish.deliver_all(runtime)
    [result] = wait_for_verdicts(engine, [queued], timeout_s=5)
    assert result.status == "failed_again"
    assert result.failed_again is not None
    again = show_dead_letter(engine, result.failed_again["id"])
    assert again is not None
    assert (again["replay_of"], again["batch_id"]) == (letter_id, queued.batch_id)
    assert again["payload"] == {**poison, "batch_id": queued.batch_id}
    # The new one replays under an id of the same length, not an ever longer one.
    assert replay_batch_id(again["batch_id"], 12345) == f"{poison['batch_id']}.r12345"


def test_what_cannot_be_replayed_is_shown_and_refused(runtime: Runtime, engine: Engine) -> None:
    with engine.begin() as conn:
        truncated = conn.execute(
            insert(dead_letters).values(
                batch_id="old",
                reason="poison envelope",
                payload='{"v": 1, "batch_id": "old", "events": [{"na…',
                created_at=utc_now(),
                kind="batch",
            )
        ).inserted_primary_key
        lone = conn.execute(
            insert(dead_letters).values(
                batch_id="b",
                reason="invalid event without workspace_id or message_id",
                payload='{"name": "x"}',
                created_at=utc_now(),
                kind="event",
                events=1,
            )
        ).inserted_primary_key
    assert truncated is not None and lone is not None
    shown = show_dead_letter(engine, truncated[0])
    assert shown is not None
    assert shown["replayable"] is False and "truncated" in shown["payload_error"]
    assert shown["payload"].startswith('{"v": 1')
    publish = Published()
    results = replayer(runtime, publish).replay([truncated[0], lone[0], 10**9], utc_now())
    assert [r.status for r in results] == ["refused", "refused", "not_found"]
    assert "truncated" in results[0].message and "workspace_id" in results[1].message
    assert publish.messages == []
    assert truncated[0] in replayer(runtime, publish).open_ids()
    assert lone[0] not in replayer(runtime, publish).open_ids()


def test_events_decided_elsewhere_are_left_out_of_the_replay(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, message_ids, letter_id = failing_batch(runtime, engine, monkeypatch, events_n=3)
    with engine.begin() as conn:  # as if another batch had carried the first one
        conn.execute(
            outcomes.update()
            .where(outcomes.c.workspace_id == workspace, outcomes.c.message_id == message_ids[0])
            .values(status="accepted", detail=None, batch_id="elsewhere")
        )
    publish = Published()
    [queued] = replayer(runtime, publish).replay([letter_id], utc_now())
    assert queued.events == 2
    sent = sent_payload(publish.messages[0])
    assert [e["message_id"] for e in sent["events"]] == message_ids[1:]
    publish.deliver_all(runtime)
    [done] = wait_for_verdicts(engine, [queued], timeout_s=5)
    assert (done.status, done.decided) == ("decided", {"accepted": 2})


def test_counts_cover_every_workspace_and_the_total(
    runtime: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = dead_letter_counts(engine)
    workspace, _, letter_id = failing_batch(runtime, engine, monkeypatch)
    after = outcome_counts(engine)["dead_letters"]
    assert after["total"] == before["total"] + 1 and after["open"] == before["open"] + 1
    assert after["workspaces"][workspace] == {"total": 1, "open": 1, "replayed": 0}
    assert isinstance(ReplayResult(letter_id, "queued", "").as_dict(), dict)


def test_events_whose_ids_the_database_cannot_store_do_not_trap_the_batch(
    runtime: Runtime, engine: Engine
) -> None:
    """An invalid event with an over-long or NUL-bearing workspace id (PostgreSQL refuses
    both) is dead-lettered and the batch finishes, instead of being requeued for ever."""
    workspace = create_workspace(engine, "unstorable-ids").workspace_id
    wire = Envelope(
        events=[Event(workspace_id=workspace, kind="custom", name="E", user_id="u")]
    ).model_dump(mode="json")
    wire["events"] += [
        {"workspace_id": "w" * 80, "kind": "custom"},  # no message id: a lone dead letter
        {"workspace_id": "w\x00", "kind": "custom"},
    ]
    handle_batch(FakeTask(Request(id=wire["batch_id"])), runtime, wire)  # type: ignore[arg-type]
    with engine.connect() as conn:
        kinds = conn.execute(
            select(dead_letters.c.kind).where(dead_letters.c.batch_id == wire["batch_id"])
        ).all()
    assert [k for (k,) in kinds] == ["event", "event"]
    assert list(outcomes_of(engine, workspace).values()) == [("accepted", None)]

    # The last resort, a whole batch given up on, keeps them in its payload only.
    whole = {**wire, "batch_id": f"whole-{wire['batch_id'][:50]}"}
    whole["events"] = [*wire["events"], {**wire["events"][0], "workspace_id": "w" * 80}]
    letter = runtime.store.dead_letter(
        batch_id=whole["batch_id"],
        reason="unexpected error: KeyError",
        detail=None,
        payload=whole,
        now=utc_now(),
        items=decode_envelope(whole).items,
    )
    assert [d.workspace_id for d in letter.rejected] == [workspace]
    shown = show_dead_letter(engine, letter.dead_letter_id)
    assert shown is not None and (shown["workspaces"], shown["events"]) == ([workspace], 4)
