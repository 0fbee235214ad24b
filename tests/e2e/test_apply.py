"""``sluice apply FILE.yaml``: a file's workspaces, settings, definitions and automations
made through the same functions as the command line and the control plane; a dry run
changes nothing; applying twice changes nothing the second time; a file that cannot be
applied whole changes nothing at all."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from sluice.store.automations import list_automations
from sluice.store.definitions import list_definitions
from sluice.store.schema import automations, workspaces
from tests.processes import sluice_executable

FILE = """
workspaces:
  - name: {name}
    settings: {{rate_limit_per_s: 50, bot_mode: flag}}
    definitions:
      - {{format: bunce, name: Purchase, params: {{plan: string}}}}
      - {{format: clevertap, name: Program Released, required: [program_id]}}
    automations:
      - on: Signed Up
        where: {{plan: pro}}
        action: {{type: webhook, url: "http://127.0.0.1:9/hooks"}}
      - on: Program Released
        action: {{type: bulletin}}
      - on: Signed Up
        action: {{type: task, name: crm.signed_up}}
"""


def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "true",
    }
    return subprocess.run(
        [sluice_executable(), "apply", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def applied(database_url: str, path: Path, *options: str) -> dict[str, Any]:
    done = run(database_url, str(path), "--json", *options)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.scalar(select(func.count()).select_from(workspaces)) or 0,
            conn.scalar(select(func.count()).select_from(automations)) or 0,
        )


def test_a_file_is_applied_once_and_again_changes_nothing(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    name = f"acme-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "sluice.yaml"
    path.write_text(FILE.format(name=name))
    before = counts(engine)
    dry = applied(database_url, path, "--dry-run")
    assert dry["dry_run"] is True and len(dry["changes"]) == 7, dry
    assert dry["made"] == [] and counts(engine) == before

    done = applied(database_url, path)
    assert done["changes"] == dry["changes"]
    (workspace,) = [m for m in done["made"] if "write_key" in m]
    ws = workspace["workspace_id"]
    assert workspace["write_key"].startswith("sk_live_")
    assert [m["secret"][:6] for m in done["made"] if "secret" in m] == ["whsec_"]
    assert {(d["format"], d["name"]) for d in list_definitions(engine, ws)} == {
        ("bunce", "Purchase"),
        ("clevertap", "Program Released"),
    }
    found = list_automations(engine, ws)
    assert {(a["on"], a["action"], a["target"]) for a in found} == {
        ("Signed Up", "webhook", "http://127.0.0.1:9/hooks"),
        ("Program Released", "bulletin", None),
        ("Signed Up", "task", "crm.signed_up"),  # its default queue: the same one again
    }

    again = applied(database_url, path)
    assert again["changes"] == [] and again["made"] == [], again
    assert counts(engine) == (before[0] + 1, before[1] + 3)

    path.write_text(FILE.format(name=name).replace("rate_limit_per_s: 50", "rate_limit_per_s: 60"))
    changed = applied(database_url, path)
    assert changed["changes"] == [f"configure workspace {name!r}: rate_limit_per_s=60"]
    text = run(database_url, str(path))
    assert text.returncode == 0 and text.stdout.strip() == "nothing to change"


def test_a_file_that_cannot_be_applied_whole_changes_nothing(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    name = f"beta-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "sluice.yaml"
    good = FILE.format(name=name)
    path.write_text(good)
    applied(database_url, path)
    before = counts(engine)
    second = f"gamma-{uuid.uuid4().hex[:8]}"
    for broken, says in (
        # a new workspace first, then a definition that would change
        (
            FILE.format(name=second)
            + good.split("workspaces:\n", 1)[1].replace("plan: string", "plan: number"),
            "cannot change",
        ),
        (FILE.format(name=second).replace("http://127.0.0.1:9/hooks", "ftp://x/"), "automation"),
        (FILE.format(name=second).replace("bot_mode: flag", "bot_mode: loud"), "bot_mode"),
        (FILE.format(name=second) + FILE.format(name=second).split("workspaces:\n", 1)[1], "twice"),
        ("workspaces: [{name: x, colour: red}]", "colour"),
        ("workspaces: [{name: '  '}]", "blank"),
        (
            "workspaces: [{name: y, definitions: [{format: bunce, name: P}, "
            "{format: bunce, name: P}]}]",
            "twice",
        ),
        ("workspaces: [{name: y, definitions: [{format: bunce, name: P, id: nope}]}]", "UUID"),
        (
            "workspaces: [{name: y, automations: [{on: X, action: {type: bulletin, queue: q}}]}]",
            "queue goes with a task",
        ),
        ("{not: yaml: at all", "not YAML"),
    ):
        path.write_text(broken)
        done = run(database_url, str(path))
        assert done.returncode == 1, (says, done.stdout)
        assert says in done.stderr, (says, done.stderr)
        assert counts(engine) == before, says
