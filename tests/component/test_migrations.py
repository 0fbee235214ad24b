"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from sluice.store.schema import metadata


def test_migrated_database_matches_the_declared_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_duplicates_are_refused_by_unique_constraints(engine: Engine) -> None:
    constraints = {
        table: {tuple(c["column_names"]) for c in inspect(engine).get_unique_constraints(table)}
        for table in ("events", "outcomes")
    }
    assert constraints == {
        "events": {("workspace_id", "message_id")},
        "outcomes": {("workspace_id", "message_id")},
    }
