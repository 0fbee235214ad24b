"""Event definitions per workspace: Bunce events with typed parameters, CleverTap business
events with required properties (docs/architecture.md §9 ``sluice definition add``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from sluice.producer.events import as_utc, utc_now
from sluice.store.engine import older_than, writing
from sluice.store.schema import event_definitions, workspaces

Format = Literal["bunce", "clevertap"]
BUNCE_TYPES = ("string", "number", "integer", "boolean", "timestamp")
MAX_CLEVERTAP_KEY_CHARS = 120


@dataclass(frozen=True, slots=True)
class Definition:
    definition_id: str
    workspace_id: str
    format: Format
    name: str
    params: dict[str, str] = field(default_factory=dict)  # bunce: key -> type
    required: list[str] = field(default_factory=list)  # clevertap: property keys


def add_definition(
    engine: Engine,
    workspace_id: str,
    format: Format,
    name: str,
    *,
    params: dict[str, str] | None = None,
    required: list[str] | None = None,
    definition_id: str | None = None,
) -> Definition:
    """Store a definition. ``definition_id`` keeps an id from elsewhere (a Bunce event id
    being migrated); by default a new uuid4 is made."""
    params = params or {}
    required = required or []
    check_definition(format, name, params, required)
    if definition_id is not None:
        definition_id = str(uuid.UUID(definition_id))  # ValueError for a malformed one
    definition = Definition(
        definition_id or str(uuid.uuid4()), workspace_id, format, name, params, required
    )
    with writing(engine) as conn:
        if (
            conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).first()
            is None
        ):
            raise LookupError(f"no workspace {workspace_id!r}")
        try:
            conn.execute(
                event_definitions.insert().values(
                    id=definition.definition_id,
                    workspace_id=workspace_id,
                    format=format,
                    name=name,
                    params=params,
                    required=required,
                    created_at=utc_now(),
                )
            )
        except IntegrityError as exc:
            raise ValueError(
                f"a {format} definition named {name!r}, or the id {definition.definition_id}, "
                "exists already"
            ) from exc
    return definition


def check_definition(
    format: Format, name: str, params: dict[str, str], required: list[str]
) -> None:
    """``ValueError`` (saying why) for a definition ``add_definition`` would refuse."""
    if not name or len(name) > 200:
        raise ValueError("a definition needs a name of 1 to 200 characters")
    if format == "bunce":
        if required:
            raise ValueError("--required is for clevertap definitions; bunce uses --param")
        bad = {key: kind for key, kind in params.items() if kind not in BUNCE_TYPES}
        if bad:
            raise ValueError(f"unknown parameter type(s) {bad}; known: {', '.join(BUNCE_TYPES)}")
        if "email" in params:
            raise ValueError("email is always part of a bunce payload; do not declare it")
    else:
        if params:
            raise ValueError("--param is for bunce definitions; clevertap uses --required")
        long = [key for key in required if len(key) > MAX_CLEVERTAP_KEY_CHARS]
        if long:
            raise ValueError(f"keys over {MAX_CLEVERTAP_KEY_CHARS} characters: {long}")


def find_definition(
    engine: Engine,
    workspace_id: str,
    format: Format,
    *,
    definition_id: str | None = None,
    name: str | None = None,
) -> Definition | None:
    query = select(event_definitions).where(
        event_definitions.c.workspace_id == workspace_id, event_definitions.c.format == format
    )
    if definition_id is not None:
        query = query.where(event_definitions.c.id == definition_id)
    if name is not None:
        query = query.where(event_definitions.c.name == name)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Definition(
        row.id, row.workspace_id, row.format, row.name, dict(row.params), list(row.required)
    )


def definition_fields(row: Any) -> dict[str, Any]:
    """A definition as ``sluice definition list --json`` and the API show it."""
    return {
        "definition_id": row.id,
        "workspace_id": row.workspace_id,
        "format": row.format,
        "name": row.name,
        "params": dict(row.params),
        "required": list(row.required),
        "created_at": as_utc(row.created_at).isoformat(),
    }


def list_definitions(
    engine: Engine,
    workspace_id: str,
    *,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The workspace's definitions, newest first; ``after`` (created_at ISO text, id) is
    where the previous page ended."""
    table = event_definitions
    query = (
        select(table)
        .where(table.c.workspace_id == workspace_id)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
    )
    if after is not None:
        query = query.where(older_than(table, after))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [definition_fields(row) for row in conn.execute(query)]


def show_definition(engine: Engine, workspace_id: str, definition_id: str) -> dict[str, Any] | None:
    table = event_definitions
    query = select(table).where(table.c.workspace_id == workspace_id, table.c.id == definition_id)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else definition_fields(row)


def delete_definition(engine: Engine, workspace_id: str, definition_id: str) -> bool:
    """Delete a definition; False if the workspace has none with this id. Gateways that
    cached it stop accepting its events within their definition cache's 30 s."""
    table = event_definitions
    with writing(engine) as conn:
        done = conn.execute(
            delete(table).where(table.c.workspace_id == workspace_id, table.c.id == definition_id)
        )
    return done.rowcount == 1
