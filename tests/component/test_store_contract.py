"""The write path's contract: PostgreSQL (one ``jsonb_to_recordset`` statement per table)
and SQLite (multi-row inserts) store the same batches as the same rows, row for row.

Both run the same sequence through ``ingest`` with rules over in-memory claims: page views
firing two automations, a login and updates, confirmations repeating an order, email opens,
an invalid event, an unknown workspace, a repeated message id, a redelivered batch, and an
order Redis forgot but the database remembers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, Table, select

from sluice.producer.envelope import Envelope
from sluice.producer.events import Event
from sluice.rules.backends.memory import MemoryClaimStore
from sluice.rules.bots import BotDetector
from sluice.rules.engine import RulePolicy, RulesEngine
from sluice.store.engine import insert_ignoring_conflicts, make_engine, writing
from sluice.store.migrate import upgrade
from sluice.store.schema import (
    automations,
    contacts,
    events,
    order_claims,
    outcomes,
    repeats,
    trigger_deliveries,
    workspaces,
)
from sluice.worker.failures import is_unstorable
from sluice.worker.ingest.batch import ingest
from sluice.worker.ingest.store import EventStore

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TABLES = (events, outcomes, repeats, contacts, order_claims, trigger_deliveries)


@pytest.fixture
def engines(postgres_url: str, tmp_path: Path) -> Iterator[dict[str, Engine]]:
    made = {
        "postgresql": make_engine(postgres_url),
        "sqlite": make_engine(f"sqlite:///{tmp_path / 'contract.db'}"),
    }
    for engine in made.values():
        upgrade(engine)
    yield made
    for engine in made.values():
        engine.dispose()


def prepare(engine: Engine, workspace_id: str) -> None:
    """The same workspace and automations in both databases (fixed ids)."""
    with writing(engine) as conn:
        conn.execute(
            workspaces.insert().values(
                id=workspace_id,
                name="contract",
                created_at=NOW,
                settings={"unknown_user_grace_s": 0},
            )
        )
        for action, target in (("bulletin", None), ("webhook", "https://example.com/hook")):
            conn.execute(
                automations.insert().values(
                    id=f"au_{workspace_id[:8]}_{action}",
                    workspace_id=workspace_id,
                    event_name="Page Viewed",
                    filters={},
                    action=action,
                    target=target,
                    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" if target else None,
                    status="active",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )


def batches(workspace_id: str) -> list[dict[str, Any]]:
    """Queued envelopes as a worker receives them; the first comes again at the end."""

    def event(index: int, **fields: Any) -> dict[str, Any]:
        made = Event.model_validate(
            {
                "workspace_id": workspace_id,
                "message_id": f"m-{index}",
                "received_at": NOW,
                "timestamp": NOW - timedelta(minutes=index),
                "source": "client",
                **fields,
            }
        )
        return orjson.loads(made.model_dump_json())

    first = [
        *(
            event(i, kind="custom", name="Page Viewed", user_id=f"u{i}", properties={"n": i})
            for i in range(4)
        ),
        event(10, kind="login", user_id="u1", email="U1@Example.com", traits={"plan": "pro"}),
        event(11, kind="confirmation", user_id="u1", properties={"orderId": "o-1"}),
        event(12, kind="confirmation", user_id="u2", properties={"orderId": "o-1"}),
        {**event(13, kind="custom", name="Broken"), "timestamp": "not a time"},
        {**event(14, kind="custom", name="Elsewhere"), "workspace_id": "no-such-workspace"},
        event(15, kind="custom", name="Bot", context={"user_agent": "Googlebot/2.1"}),
    ]
    second = [
        # As deep as an event may be nested: the rows around it must still encode.
        event(26, kind="custom", name="Page Viewed", user_id="u5", properties=nested(251)),
        # What the Bento adapter sets beside the columns: the rules read it, nothing stores it.
        event(25, kind="confirmation", user_id="u9", order_id="o-25", creates_user=True),
        event(20, kind="update", user_id="u1", traits={"plan": "team", "seats": 3}),
        event(21, kind="update", user_id="nobody", traits={"plan": "free"}),
        event(0, kind="custom", name="Page Viewed", user_id="u0", properties={"n": 0}),
        event(22, kind="email_open", user_id="u1"),
        event(23, kind="email_open", user_id="u1"),
        event(24, kind="custom", name="Page Viewed", traits={"x": "ü ∑ \\ \" '"}, user_id="u4"),
    ]
    return [
        {"v": 1, "batch_id": "b-1", "created_at": NOW.isoformat(), "events": first},
        {"v": 1, "batch_id": "b-2", "created_at": NOW.isoformat(), "events": second},
        {"v": 1, "batch_id": "b-1", "created_at": NOW.isoformat(), "events": first},
    ]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def forgotten_order(workspace_id: str) -> dict[str, Any]:
    """A confirmation of o-1 after Redis lost its claims: only the database knows o-1."""
    late = Event.model_validate(
        {
            "workspace_id": workspace_id,
            "message_id": "m-30",
            "kind": "confirmation",
            "user_id": "u3",
            "properties": {"orderId": "o-1"},
            "received_at": NOW,
            "timestamp": NOW,
        }
    )
    return orjson.loads(Envelope(batch_id="b-3", events=[late]).wire)


def rows_of(engine: Engine, table: Table, workspace_id: str) -> list[tuple[Any, ...]]:
    # Serial ids differ between the databases; a trigger's id is derived, and must not.
    columns = [c for c in table.c if c.name != "id" or table is trigger_deliveries]
    query = select(*columns).where(table.c.workspace_id == workspace_id)
    with engine.connect() as conn:
        found = [tuple(_normal(value) for value in row) for row in conn.execute(query)]
    return sorted(found, key=repr)


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLite gives back naive UTC
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return value


def test_both_backends_store_the_same_rows(engines: dict[str, Engine]) -> None:
    workspace_id = f"contract-{uuid.uuid4().hex[:8]}"
    verdicts: dict[str, list[tuple[str, str, str | None, str | None]]] = {}
    for backend, engine in engines.items():
        prepare(engine, workspace_id)
        store = EventStore(engine)
        rules = RulesEngine(MemoryClaimStore(), BotDetector())
        reports = [
            ingest(payload, store, rules, RulePolicy(), NOW) for payload in batches(workspace_id)
        ]
        forgetful = RulesEngine(MemoryClaimStore(), BotDetector())
        reports.append(ingest(forgotten_order(workspace_id), store, forgetful, RulePolicy(), NOW))
        verdicts[backend] = [
            (d.message_id, str(d.verdict.status), d.verdict.reason, d.verdict.detail)
            for report in reports
            for d in report.decisions
        ]
    assert verdicts["postgresql"] == verdicts["sqlite"]
    reasons = {reason for _, _, reason, _ in verdicts["sqlite"]}
    assert {"duplicate_order", "duplicate_message", "invalid", "unknown_user", "bot"} <= reasons
    for table in TABLES:
        stored = {
            backend: rows_of(engine, table, workspace_id) for backend, engine in engines.items()
        }
        assert stored["postgresql"] == stored["sqlite"], table.name
    assert len(rows_of(engines["sqlite"], trigger_deliveries, workspace_id)) == 2 * 6
    assert len(rows_of(engines["sqlite"], repeats, workspace_id)) == 1


def test_large_batches_go_to_postgresql_in_documents_that_fit(
    engines: dict[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sluice.store.engine.MAX_DOCUMENT_BYTES", 2_000)
    workspace_id = f"split-{uuid.uuid4().hex[:8]}"
    rows = [
        {
            "workspace_id": workspace_id,
            "message_id": f"m-{i}",
            "status": "accepted",
            "batch_id": "b-split",
            "decided_at": NOW,
        }
        for i in range(50)
    ]
    engine = engines["postgresql"]
    with writing(engine) as conn:
        inserted = insert_ignoring_conflicts(
            conn, outcomes, rows, returning=("workspace_id", "message_id")
        )
        again = insert_ignoring_conflicts(conn, outcomes, rows, returning=("message_id",))
    assert sorted(inserted) == sorted((workspace_id, row["message_id"]) for row in rows)
    assert again == []  # every row exists: nothing inserted, nothing returned
    assert len(rows_of(engine, outcomes, workspace_id)) == 50


def test_a_row_json_cannot_hold_is_a_row_the_database_refuses(engines: dict[str, Engine]) -> None:
    row = {
        "workspace_id": "w",
        "message_id": "m",
        "status": "accepted",
        "batch_id": "b",
        "decided_at": NOW,
        "detail": 2**70,
    }  # orjson holds 64-bit integers at most
    with pytest.raises(Exception) as raised, writing(engines["postgresql"]) as conn:
        insert_ignoring_conflicts(conn, outcomes, [row])
    assert is_unstorable(raised.value)
