"""The audit log of the control plane: one row per write through ``/admin/v1`` (who, what,
on what, when, how it ended), read newest first by ``GET /admin/v1/audit`` and
``sluice audit`` (docs/admin-api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from sluice.producer.events import as_utc, utc_now
from sluice.store.engine import writing
from sluice.store.schema import admin_audit


def record_audit(
    engine: Engine,
    token_id: str,
    operation: str,
    target: str,
    outcome: int,
    at: datetime | None = None,
) -> None:
    with writing(engine) as conn:
        conn.execute(
            admin_audit.insert().values(
                token_id=token_id,
                operation=operation[:100],
                target=target[:300],
                outcome=outcome,
                at=at or utc_now(),
            )
        )


def audit_entries(engine: Engine, limit: int, before_id: int | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` entries, newest first, older than ``before_id`` when given."""
    query = select(admin_audit).order_by(admin_audit.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(admin_audit.c.id < before_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": row.id,
            "token_id": row.token_id,
            "operation": row.operation,
            "target": row.target,
            "outcome": row.outcome,
            "at": as_utc(row.at).isoformat(),
        }
        for row in rows
    ]
