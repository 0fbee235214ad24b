"""``sluice events export``'s reading and shaping (``sluice.ops.export``) on
PostgreSQL and SQLite: events of every outcome, filters, order, chunking, and lines that
parse with the API's field names. The database is filled by the worker's own ingestion."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from sluice.actions import Action
from sluice.gateway.native import EventOutcome
from sluice.ops.export import (
    ExportSelection,
    UnknownWorkspaceError,
    export_ndjson,
)
from sluice.producer.events import Event
from sluice.rules import Status
from sluice.rules.backends.memory import MemoryClaimStore
from sluice.rules.bots import BotDetector
from sluice.rules.engine import RulePolicy, RulesEngine
from sluice.store.automations import add_automation
from sluice.store.views import triggers_of
from sluice.store.workspaces import configure_workspace, create_workspace
from sluice.worker.ingest.batch import ingest
from sluice.worker.ingest.store import EventStore

FIRST_DECIDED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # when the batches were decided
# When the events happened: before both decisions, and recent enough to fire automations.
EVENT_TIME = FIRST_DECIDED - timedelta(hours=1)
SECOND_DECIDED = FIRST_DECIDED + timedelta(hours=1)


def _event(workspace_id: str, index: int, **fields: Any) -> dict[str, Any]:
    made = Event.model_validate(
        {
            "workspace_id": workspace_id,
            "message_id": f"m-{index:02d}",
            "received_at": FIRST_DECIDED,
            "timestamp": EVENT_TIME + timedelta(minutes=index),
            "source": "client",
            **fields,
        }
    )
    return orjson.loads(made.model_dump_json())


def _filled(engine: Engine) -> str:
    """A workspace with accepted, discarded and rejected events in two batches, decided an
    hour apart; its id."""
    workspace_id = create_workspace(engine, f"export-{uuid.uuid4().hex[:8]}").workspace_id
    configure_workspace(engine, workspace_id, {"unknown_user_grace_s": "0"})
    add_automation(engine, workspace_id, "Page Viewed", Action.BULLETIN, target=None)

    def event(index: int, **fields: Any) -> dict[str, Any]:
        return _event(workspace_id, index, **fields)

    first = [
        *(
            event(i, kind="custom", name="Page Viewed", user_id=f"u{i}", properties={"n": i})
            for i in (5, 1, 9)  # arrival order is not event-time order
        ),
        event(2, kind="confirmation", user_id="u1", properties={"orderId": "o-1"}),
        event(3, kind="confirmation", user_id="u2", properties={"orderId": "o-1"}),  # discarded
        event(4, kind="custom", name="Crawl", context={"user_agent": "Googlebot/2.1"}),  # bot
        {**event(6, kind="custom", name="Broken"), "timestamp": "not a time"},  # invalid
    ]
    second = [
        event(0, kind="login", user_id="u1", email="U1@Example.com", traits={"plan": "pro"}),
        event(7, kind="email_open", user_id="u1"),
        event(8, kind="email_open", user_id="u1"),  # throttled
        event(10, kind="update", user_id="nobody", traits={"plan": "free"}),  # unknown user
        event(11, kind="custom", name="Page Viewed", user_id="u2", properties={"ü": '∑ \\ "'}),
    ]
    store = EventStore(engine)
    rules = RulesEngine(MemoryClaimStore(), BotDetector())
    for batch_id, items, now in (("b-1", first, FIRST_DECIDED), ("b-2", second, SECOND_DECIDED)):
        payload = {"v": 1, "batch_id": batch_id, "created_at": now.isoformat(), "events": items}
        ingest(payload, store, rules, RulePolicy(), now)
    return workspace_id


EXPECTED = {  # message id → (status, reason, stored)
    "m-00": ("accepted", None, True),
    "m-01": ("accepted", None, True),
    "m-02": ("accepted", None, True),
    "m-03": ("discarded", "duplicate_order", False),
    "m-04": ("discarded", "bot", False),
    "m-05": ("accepted", None, True),
    "m-06": ("rejected", "invalid", False),
    "m-07": ("accepted", None, True),
    "m-08": ("discarded", "throttled", False),
    "m-09": ("accepted", None, True),
    "m-10": ("rejected", "unknown_user", False),
    "m-11": ("accepted", None, True),
}


@pytest.fixture
def workspace_id(engine: Engine) -> str:
    return _filled(engine)


def _export(engine: Engine, selection: ExportSelection, chunk_rows: int = 3) -> list[bytes]:
    """The raw lines, each checked to be one JSON object ending in a newline."""
    data = b"".join(export_ndjson(engine, selection, chunk_rows=chunk_rows))
    assert data == b"" or data.endswith(b"\n")
    lines = data.splitlines()
    assert all(isinstance(orjson.loads(line), dict) for line in lines)
    return lines


def _parsed(
    engine: Engine, selection: ExportSelection, chunk_rows: int = 3
) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in _export(engine, selection, chunk_rows)]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_every_event_once_with_its_outcome_in_time_order(engine: Engine, workspace_id: str) -> None:
    found = _parsed(engine, ExportSelection(workspace_id))
    assert {
        line["message_id"]: (line["status"], line["reason"], line["stored"]) for line in found
    } == EXPECTED
    assert len(found) == len(EXPECTED)
    # Stored events by event time; the others, with no event time in a column, by the
    # time they were decided (all after the events' times here, so they come last).
    stored = [line for line in found if line["stored"]]
    assert [line["message_id"] for line in stored] == sorted(
        (m for m, (_, _, s) in EXPECTED.items() if s), key=lambda m: int(m[2:])
    )
    assert found[: len(stored)] == stored
    decided = [_time(line["decided_at"]) for line in found[len(stored) :]]
    assert decided == sorted(decided)
    assert decided[0] == FIRST_DECIDED and decided[-1] == SECOND_DECIDED


def test_lines_carry_the_event_and_the_api_field_names(engine: Engine, workspace_id: str) -> None:
    found = {line["message_id"]: line for line in _parsed(engine, ExportSelection(workspace_id))}
    api_fields = set(EventOutcome.model_fields) - {"triggers"}
    assert all(api_fields <= set(line) for line in found.values())

    login = found["m-00"]
    assert login["kind"] == "login" and login["user_id"] == "u1"
    assert login["email"] == "U1@Example.com"  # as sent (contacts keep it lower-cased)
    assert login["traits"] == {"plan": "pro"}
    assert login["timestamp"] == "2026-11-30T11:00:00Z"  # as the API writes times
    assert login["decided_at"] == "2026-11-30T13:00:00Z"
    assert login["raw"] is None and login["is_bot"] is False and login["batch_id"] == "b-2"
    assert found["m-11"]["properties"] == {"ü": '∑ \\ "'}

    duplicate = found["m-03"]
    assert duplicate["detail"] and duplicate["kind"] == "confirmation"
    assert orjson.loads(duplicate["raw"])["properties"] == {"orderId": "o-1"}
    assert duplicate["timestamp"] is None and duplicate["properties"] is None
    invalid = found["m-06"]
    assert invalid["kind"] is None and '"not a time"' in invalid["raw"]
    assert invalid["detail"].startswith("timestamp")


@pytest.mark.parametrize("status", ["accepted", "discarded", "rejected"])
def test_status_filter(engine: Engine, workspace_id: str, status: str) -> None:
    found = _parsed(engine, ExportSelection(workspace_id, status=Status(status)))
    assert {line["message_id"] for line in found} == {
        m for m, (s, _, _) in EXPECTED.items() if s == status
    }


def test_queued_is_not_exportable(engine: Engine, workspace_id: str) -> None:
    with pytest.raises(ValueError, match="not in the database"):
        export_ndjson(engine, ExportSelection(workspace_id, status=Status.QUEUED))


def test_time_window_is_event_time_or_decision_time(engine: Engine, workspace_id: str) -> None:
    # Stored events between minutes 2 (inclusive) and 9 (exclusive) of the event times.
    window = ExportSelection(
        workspace_id,
        since=EVENT_TIME + timedelta(minutes=2),
        until=EVENT_TIME + timedelta(minutes=9),
    )
    assert [line["message_id"] for line in _parsed(engine, window)] == [
        "m-02",
        "m-05",
        "m-07",
    ]
    # Outcome-only events of the second batch, by its decision time.
    second = ExportSelection(workspace_id, since=SECOND_DECIDED)
    assert {line["message_id"] for line in _parsed(engine, second)} == {"m-08", "m-10"}
    first = ExportSelection(
        workspace_id, since=FIRST_DECIDED, until=SECOND_DECIDED, status=Status.DISCARDED
    )
    assert {line["message_id"] for line in _parsed(engine, first)} == {"m-03", "m-04"}
    # A window in another zone means the same instant.
    assert window.since is not None
    zoned = replace(window, since=window.since.astimezone(timezone(timedelta(hours=5))))
    assert _parsed(engine, zoned) == _parsed(engine, window)


@pytest.mark.parametrize("limit", [1, 4, 7, 100])
def test_limit_takes_the_first_lines(engine: Engine, workspace_id: str, limit: int) -> None:
    everything = _export(engine, ExportSelection(workspace_id))
    assert _export(engine, ExportSelection(workspace_id, limit=limit)) == everything[:limit]


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, 2000])
def test_the_same_lines_whatever_the_chunk(
    engine: Engine, workspace_id: str, chunk_rows: int
) -> None:
    chunks = list(export_ndjson(engine, ExportSelection(workspace_id), chunk_rows=chunk_rows))
    assert all(chunk.count(b"\n") <= chunk_rows for chunk in chunks)
    assert _export(engine, ExportSelection(workspace_id), chunk_rows) == _export(
        engine, ExportSelection(workspace_id), 3
    )


def test_triggers_as_the_api_shows_them(engine: Engine, workspace_id: str) -> None:
    found = {
        line["message_id"]: line
        for line in _parsed(engine, ExportSelection(workspace_id, with_triggers=True))
    }
    assert all("triggers" in line for line in found.values())
    fired = {m for m, line in found.items() if line["triggers"]}
    assert fired == {"m-01", "m-05", "m-09", "m-11"}  # the accepted Page Viewed events
    [trigger] = found["m-05"]["triggers"]
    [api_view] = triggers_of(engine, workspace_id, "m-05")
    assert set(trigger) == set(api_view)
    assert trigger["action"] == "bulletin" and trigger["trigger_id"] == api_view["trigger_id"]
    assert trigger["created_at"].endswith("Z")
    assert "triggers" not in _parsed(engine, ExportSelection(workspace_id))[0]


def test_another_workspace_is_left_out_and_an_unknown_one_refused(
    engine: Engine, workspace_id: str
) -> None:
    other = _filled(engine)
    mine = _parsed(engine, ExportSelection(workspace_id))
    assert {line["workspace_id"] for line in mine} == {workspace_id}
    assert len(_parsed(engine, ExportSelection(other))) == len(mine)
    with pytest.raises(UnknownWorkspaceError):
        export_ndjson(engine, ExportSelection("no-such-workspace"))


def test_postgresql_reads_events_through_the_time_index(engine: Engine, workspace_id: str) -> None:
    """With the planner told to avoid full scans, the query shape still fits the index of
    migration 0008 (bench/export.py shows the plan on a million rows)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("EXPLAIN of PostgreSQL")
    from sluice.ops.export import stored_events_query

    query = stored_events_query(ExportSelection(workspace_id, since=EVENT_TIME), None)
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_events_workspace_timestamp" in plan, plan
