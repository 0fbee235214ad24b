"""Configuration as code (``sluice apply FILE.yaml [--dry-run]``, docs/admin-api.md):
workspaces with their settings, definitions and automations declared in a file, applied
through the functions the command line and the control plane call. Applying a file twice
changes nothing the second time.

What the file names is found by its identity, and made when missing:

- a workspace by its ``name`` (two workspaces of that name: an error, nothing applied);
  its ``settings`` are merged (``configure_workspace``) when one differs;
- a definition by its ``format`` and ``name``; one whose params or required properties
  differ is an error (a definition cannot change: its events were validated with it);
- an automation by what it does: ``on``, ``where``, and its action with its target. One
  disabled by an operator or by its failing webhook is left disabled (noted).

Nothing the file does not name is removed: what is left alone is counted in the plan."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine, select

from sluice.actions import ACTIONS, Action
from sluice.store.automations import add_automation, list_automations
from sluice.store.definitions import add_definition, check_definition, list_definitions
from sluice.store.schema import workspaces
from sluice.store.workspaces import RuleOverrides, configure_workspace, create_workspace


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeclaredDefinition(_Strict):
    format: Literal["bunce", "clevertap"]
    name: str = Field(min_length=1, max_length=200)
    params: dict[str, str] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    id: str | None = None


class DeclaredAction(_Strict):
    type: Literal["webhook", "task", "bulletin"]
    url: str | None = None
    name: str | None = None
    queue: str | None = None

    @model_validator(mode="after")
    def queue_is_for_tasks(self) -> DeclaredAction:
        if self.queue is not None and self.type != "task":
            raise ValueError("queue goes with a task action")
        return self

    @property
    def target(self) -> str | None:
        return self.url if self.type == "webhook" else self.name


class DeclaredAutomation(_Strict):
    on: str = Field(min_length=1, max_length=200)
    where: dict[str, str] = Field(default_factory=dict)
    action: DeclaredAction

    @model_validator(mode="before")
    @classmethod
    def yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads an unquoted ``on:`` key as the boolean true: it is ``on`` here."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data


class DeclaredWorkspace(_Strict):
    name: str = Field(min_length=1, max_length=200)
    settings: RuleOverrides = Field(default_factory=RuleOverrides)
    definitions: list[DeclaredDefinition] = Field(default_factory=list)
    automations: list[DeclaredAutomation] = Field(default_factory=list)


class Declared(_Strict):
    workspaces: list[DeclaredWorkspace]


@dataclass
class Plan:
    """What applying the file does (or did): one line per change, what it made that is
    shown once (write keys, webhook secrets), and what it left alone."""

    changes: list[str] = field(default_factory=list)
    made: list[dict[str, Any]] = field(default_factory=list)
    left_alone: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "made": self.made,
            "left_alone": self.left_alone,
            "notes": self.notes,
        }


class ApplyError(ValueError):
    """The file cannot be applied as it is; nothing was changed."""


def apply(
    engine: Engine,
    declared: Declared,
    *,
    dry_run: bool = False,
    allow_private_webhooks: bool = False,
) -> Plan:
    """Make the database hold what ``declared`` says; with ``dry_run``, only say what that
    would change. The whole file is checked before the first change."""
    plan = Plan()
    names = [each.name for each in declared.workspaces]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ApplyError(f"the file names workspace {twice[0]!r} twice")
    steps = [
        _workspace_steps(engine, each, plan, allow_private_webhooks) for each in declared.workspaces
    ]
    if dry_run:
        return plan
    for step in steps:
        step()
    return plan


def _workspace_ids(engine: Engine, name: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(workspaces.c.id).where(workspaces.c.name == name)))


def _current_settings(engine: Engine, workspace_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = conn.scalar(select(workspaces.c.settings).where(workspaces.c.id == workspace_id))
    return dict(found or {})


def _workspace_steps(
    engine: Engine, wanted: DeclaredWorkspace, plan: Plan, allow_private_webhooks: bool
) -> Callable[[], None]:
    """Check one workspace against the database, add its changes to ``plan``, and return
    the step that makes them."""
    if not wanted.name.strip():
        raise ApplyError("a workspace name cannot be blank")
    pairs = [(d.format, d.name) for d in wanted.definitions]
    twice = sorted({pair for pair in pairs if pairs.count(pair) > 1})
    if twice:
        raise ApplyError(
            f"{wanted.name!r} declares the {twice[0][0]} definition {twice[0][1]!r} twice"
        )
    found = _workspace_ids(engine, wanted.name)
    if len(found) > 1:
        raise ApplyError(f"{len(found)} workspaces are named {wanted.name!r}: rename one first")
    workspace_id = found[0] if found else None
    settings = wanted.settings.model_dump(exclude_unset=True)
    if workspace_id is None:
        plan.changes.append(f"create workspace {wanted.name!r}")
        existing_definitions: dict[tuple[str, str], dict[str, Any]] = {}
        existing_automations: list[dict[str, Any]] = []
        changed_settings = settings
    else:
        current = _current_settings(engine, workspace_id)
        changed_settings = {k: v for k, v in settings.items() if current.get(k) != v}
        existing_definitions = {
            (d["format"], d["name"]): d for d in list_definitions(engine, workspace_id)
        }
        existing_automations = list_automations(engine, workspace_id)
    if changed_settings:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(changed_settings.items()))
        plan.changes.append(f"configure workspace {wanted.name!r}: {shown}")

    new_definitions = []
    for definition in wanted.definitions:
        existing = existing_definitions.get((definition.format, definition.name))
        if existing is None:
            try:
                check_definition(
                    definition.format, definition.name, definition.params, definition.required
                )
                if definition.id is not None:
                    uuid.UUID(definition.id)
            except ValueError as exc:
                raise ApplyError(f"{wanted.name!r}, definition {definition.name!r}: {exc}") from exc
            new_definitions.append(definition)
            plan.changes.append(
                f"add {definition.format} definition {definition.name!r} to {wanted.name!r}"
            )
        elif existing["params"] != definition.params or existing["required"] != list(
            definition.required
        ):
            raise ApplyError(
                f"the {definition.format} definition {definition.name!r} of {wanted.name!r} "
                "differs from the file; a definition cannot change (add one of another name)"
            )
    declared_names = {(d.format, d.name) for d in wanted.definitions}
    _left(plan, "definitions", sum(1 for k in existing_definitions if k not in declared_names))

    def identity(on: str, where: dict[str, str], action: str, target: Any, queue: Any) -> Any:
        return (on, tuple(sorted(where.items())), action, target, queue)

    have = {
        identity(a["on"], a["where"], a["action"], a["target"], a["queue"]): a
        for a in existing_automations
    }
    new_automations = []
    wanted_ids = set()
    for automation in wanted.automations:
        action = automation.action
        try:  # what would be stored (a task's default queue, say) is its identity
            checked = ACTIONS[Action(action.type)].checked(
                action.target, action.queue, allow_private=allow_private_webhooks
            )
        except ValueError as exc:
            raise ApplyError(f"{wanted.name!r}, automation on {automation.on!r}: {exc}") from exc
        key = identity(automation.on, automation.where, action.type, checked.target, checked.queue)
        wanted_ids.add(key)
        current_automation = have.get(key)
        if current_automation is None:
            new_automations.append(automation)
            plan.changes.append(
                f"add {action.type} automation on {automation.on!r} to {wanted.name!r}"
            )
        elif current_automation["status"] != "active":
            plan.notes.append(
                f"the {action.type} automation on {automation.on!r} of {wanted.name!r} is "
                f"disabled ({current_automation['disabled_reason']}): left so"
            )
    _left(plan, "automations", sum(1 for k in have if k not in wanted_ids))

    def step() -> None:
        target_id = workspace_id
        if target_id is None:
            created = create_workspace(engine, wanted.name)
            target_id = created.workspace_id
            plan.made.append(
                {
                    "workspace": wanted.name,
                    "workspace_id": target_id,
                    "write_key": created.write_key,
                }
            )
        if changed_settings:
            configure_workspace(engine, target_id, {k: str(v) for k, v in changed_settings.items()})
        for definition in new_definitions:
            made = add_definition(
                engine,
                target_id,
                definition.format,
                definition.name,
                params=definition.params,
                required=definition.required,
                definition_id=definition.id,
            )
            plan.made.append(
                {"workspace": wanted.name, "definition": definition.name, "id": made.definition_id}
            )
        for automation in new_automations:
            added = add_automation(
                engine,
                target_id,
                automation.on,
                Action(automation.action.type),
                target=automation.action.target,
                queue=automation.action.queue,
                filters=automation.where,
                allow_private_webhooks=allow_private_webhooks,
            )
            made_automation: dict[str, Any] = {
                "workspace": wanted.name,
                "automation_id": added.id,
                "on": automation.on,
            }
            if added.secret:
                made_automation["secret"] = added.secret
            plan.made.append(made_automation)

    return step


def _left(plan: Plan, what: str, count: int) -> None:
    if count:
        plan.left_alone[what] = plan.left_alone.get(what, 0) + count
