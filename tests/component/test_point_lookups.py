"""The worker's and the deliverer's per-batch lookups are planned as one index probe per id
on PostgreSQL, whatever the table's statistics say (sluice.store.engine.point_lookup): a
workspace of 200,000 rows inserted after the last ANALYZE (autovacuum off) must not be read
whole for a batch."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from sluice.delivery.payload import EVENT_FIELDS
from sluice.producer.events import Event
from sluice.rules import Verdict
from sluice.rules.decisions import Decision
from sluice.store.engine import make_engine, point_lookup
from sluice.store.migrate import upgrade
from sluice.store.schema import events
from sluice.worker.ingest.settle import settle_message_ids, settle_order_claims
from sluice.worker.ingest.store import EventStore

pytestmark = pytest.mark.postgres

WS = "ws-stale"
ROWS = 200_000
NOW = datetime(2026, 12, 1, tzinfo=UTC)
LOOKED_UP = ("outcomes", "contacts", "order_claims", "events")
STALE = {
    "outcomes": "INSERT INTO outcomes (workspace_id, message_id, status, batch_id, decided_at) "
    "SELECT :ws, 'm-' || i, 'accepted', 'b-' || (i / 100), now() "
    "FROM generate_series(1, :rows) AS i",
    "contacts": "INSERT INTO contacts (workspace_id, user_id, email, attributes, "
    "attribute_times, created_at, updated_at) "
    "SELECT :ws, 'u-' || i, 'u-' || i || '@example.com', '{}', '{}', now(), now() "
    "FROM generate_series(1, :rows) AS i",
    "order_claims": "INSERT INTO order_claims (workspace_id, order_id, message_id, claimed_at) "
    "SELECT :ws, 'o-' || i, 'm-' || i, now() FROM generate_series(1, :rows) AS i",
    "events": "INSERT INTO events (workspace_id, message_id, kind, name, traits, properties, "
    "context, timestamp, received_at, source, batch_id, stored_at) "
    "SELECT :ws, 'm-' || i, 'custom', 'E', '{}', '{}', '{}', now(), now(), 'client', "
    "'b-' || (i / 100), now() "
    "FROM generate_series(1, :rows) AS i",
}


@pytest.fixture(scope="module")
def stale(postgres_url: str) -> Iterator[Engine]:
    """The workspace's rows inserted after the tables were analysed empty."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workspaces (id, name, created_at, settings) "
                "VALUES (:ws, 's', now(), '{}')"
            ),
            {"ws": WS},
        )
        for table in LOOKED_UP:
            conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
            conn.execute(text(f"ANALYZE {table}"))
    with engine.begin() as conn:
        for statement in STALE.values():
            conn.execute(text(statement), {"ws": WS, "rows": ROWS})
    yield engine
    with engine.begin() as conn:
        for table in LOOKED_UP:
            conn.execute(text(f"DELETE FROM {table} WHERE workspace_id = :ws"), {"ws": WS})
            conn.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))
        conn.execute(text("DELETE FROM workspaces WHERE id = :ws"), {"ws": WS})
    engine.dispose()


def selects_of(engine: Engine) -> list[tuple[str, Any]]:
    """Record the SELECT statements run on ``engine`` (with their parameters)."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    return seen


def plan(conn: Connection, statement: str, parameters: Any) -> str:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("EXPLAIN " + statement, parameters)
    return "\n".join(row[0] for row in cursor.fetchall())


def assert_probes(engine: Engine, statements: list[tuple[str, Any]], table: str) -> None:
    """Each statement reading ``table`` does so by an index scan with a condition on the id
    looked up, never a sequential or bitmap scan of the workspace."""
    reading = [(s, p) for s, p in statements if re.search(rf"\bFROM {table}\b", s)]
    assert reading, f"no lookup of {table} was run"
    with engine.connect() as conn:
        for statement, parameters in reading:
            shown = plan(conn, statement, parameters)
            assert f"Seq Scan on {table}" not in shown, shown
            assert "Bitmap Heap Scan" not in shown, shown
            assert re.search(rf"Index (Only )?Scan using \S+ on {table}", shown), shown
            assert "wanted.value" in shown, shown  # the index condition names each id


def ids(prefix: str, count: int = 200) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, count * 1000, 1000)]


def test_prior_outcomes_are_a_probe_per_message_id(stale: Engine) -> None:
    seen = selects_of(stale)
    found = EventStore(stale).prior_outcomes([(WS, m) for m in [*ids("m-"), "m-new"]])
    assert len(found) == 200
    assert_probes(stale, seen, "outcomes")


def test_existing_identities_are_a_probe_per_user_id_and_email(stale: Engine) -> None:
    seen = selects_of(stale)
    wanted = [(WS, ("id", u)) for u in ids("u-")] + [
        (WS, ("email", f"{u}@example.com")) for u in ids("u-")
    ]
    assert len(EventStore(stale).existing_identities(wanted)) == 400
    assert_probes(stale, seen, "contacts")


def confirmation(message_id: str, order_id: str) -> Decision:
    event = Event(
        workspace_id=WS,
        message_id=message_id,
        kind="confirmation",
        name="Order Completed",
        user_id="u-1",
        properties={"orderId": order_id},
    )
    return Decision.of(event, Verdict.accept(), order_id=order_id)


def test_settling_order_claims_and_message_ids_are_probes(stale: Engine) -> None:
    seen = selects_of(stale)
    decisions = [confirmation(f"new-{o}", o) for o in ids("o-")]
    with stale.connect() as conn:
        settle_order_claims(conn, decisions, range(len(decisions)), NOW)
        settle_message_ids(conn, decisions, range(len(decisions)), "b-new", inserted=set())
        conn.rollback()
    assert {d.verdict.reason for d in decisions} == {"duplicate_order"}
    assert_probes(stale, seen, "order_claims")
    assert_probes(stale, seen, "outcomes")


def test_the_deliverers_read_of_leased_events_is_a_probe_per_message_id(stale: Engine) -> None:
    # The statement the deliverer's lease read runs (sluice.delivery.leases), for 200 ids.
    columns = [events.c[name] for name in EVENT_FIELDS]
    with stale.connect() as conn:
        query = point_lookup(
            conn.dialect, columns, events.c.message_id, ids("m-"), events.c.workspace_id == WS
        )
        compiled = query.compile(dialect=conn.dialect)
        assert len(conn.execute(query).all()) == 200
    assert_probes(stale, [(str(compiled), compiled.params)], "events")
