"""The `sluice` command as users run it: workspace creation and the embedded dev stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sluice.cli.embedded_redis import free_port
from tests.processes import children_of, sluice_executable
from tests.receiver import Reply, running_receiver


def test_workspace_create_prints_a_working_write_key(database_url: str) -> None:
    env = {**os.environ, "SLUICE_DATABASE_URL": database_url}
    result = subprocess.run(
        [sluice_executable(), "workspace", "create", "Acme", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    created = json.loads(result.stdout)
    assert set(created) == {"workspace_id", "write_key"}
    assert created["write_key"].startswith("sk_live_")

    from sluice.store.engine import make_engine
    from sluice.store.workspaces import workspace_for_key

    engine = make_engine(database_url)
    assert workspace_for_key(engine, created["write_key"]) == created["workspace_id"]
    assert workspace_for_key(engine, created["write_key"] + "x") is None
    engine.dispose()


def test_sluice_dev_runs_the_whole_stack_with_nothing_installed(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_ALLOW_PRIVATE_WEBHOOKS"] = "true"  # the receiver below is on loopback
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sluice_executable(), "dev", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, dev, tmp_path / "dev.log")
        demo = json.loads((tmp_path / "data" / "demo-workspace.json").read_text())
        auth = (demo["write_key"], "")
        sent = httpx.post(
            f"{base}/v1/track", auth=auth, json={"userId": "u1", "event": "Signed Up"}
        ).json()
        status = _wait_decided(f"{base}/v1/events/{sent['message_id']}", auth)
        assert status == "accepted"
        # A worker that dies (here: killed with its pool, as the kernel's OOM killer would)
        # is started again, and the stack goes on deciding events.
        [worker] = children_of(dev.pid, " worker ")
        for pid in [*children_of(worker), worker]:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while children_of(dev.pid, " worker ") in ([], [worker]):
            assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()[-3000:]
            time.sleep(0.2)
        again = httpx.post(
            f"{base}/v1/track", auth=auth, json={"userId": "u3", "event": "Signed Up"}
        ).json()
        assert _wait_decided(f"{base}/v1/events/{again['message_id']}", auth) == "accepted"
        assert "exited with code -9" in (tmp_path / "dev.log").read_text()
        with running_receiver() as receiver:
            url = receiver.script("/dev-hook", [Reply(200)])
            added = subprocess.run(
                [
                    sluice_executable(),
                    "automation",
                    "add",
                    demo["workspace_id"],
                    "--on",
                    "Signed Up",
                    "--webhook",
                    url,
                    "--json",
                ],
                env={**env, "SLUICE_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'sluice.db'}"},
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert json.loads(added.stdout)["secret"].startswith("whsec_")
            httpx.post(f"{base}/v1/track", auth=auth, json={"userId": "u2", "event": "Signed Up"})
            (_request,) = receiver.wait_for("/dev-hook", 1, timeout_s=60)  # the worker delivers
        assert (tmp_path / "data" / "sluice.db").exists()
        assert (tmp_path / "data" / "redis" / "redis.log").exists()
        assert demo["write_key"] in (tmp_path / "dev.log").read_text()
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=60)
        log.close()


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sluice dev exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"sluice dev did not become healthy:\n{log.read_text()[-3000:]}")


def _wait_decided(url: str, auth: tuple[str, str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status: str = httpx.get(url, auth=auth).json()["status"]
        if status != "queued":
            return status
        time.sleep(0.1)
    pytest.fail("the event stayed queued")


def test_workspace_configure_sets_rule_overrides_that_workers_read(database_url: str) -> None:
    from sluice.settings import Settings
    from sluice.store.engine import make_engine
    from sluice.store.workspaces import create_workspace
    from sluice.worker.ingest.store import EventStore

    engine = make_engine(database_url)
    ws = create_workspace(engine, "tuned").workspace_id
    env = {**os.environ, "SLUICE_DATABASE_URL": database_url}

    def configure(*pairs: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sluice_executable(), "workspace", "configure", ws, *pairs],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = configure("email_open_window_s=600", "bot_mode=flag")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"email_open_window_s": 600, "bot_mode": "flag"}
    policy = EventStore(engine).workspace_policies([ws], Settings().rule_policy())[ws]
    assert (policy.email_open_window_s, policy.bot_mode, policy.unknown_user_grace_s) == (
        600,
        "flag",
        30,
    )
    for bad in ("bot_mode=maybe", "email_open_window_s=-1", "colour=blue"):
        refused = configure(bad)
        assert refused.returncode != 0 and "Error" in refused.stderr
    engine.dispose()


def test_definition_add_prints_an_id_that_bunce_accepts(database_url: str) -> None:
    from sluice.store.definitions import find_definition
    from sluice.store.engine import make_engine
    from sluice.store.workspaces import create_workspace

    engine = make_engine(database_url)
    ws = create_workspace(engine, "defs").workspace_id
    env = {**os.environ, "SLUICE_DATABASE_URL": database_url}

    def add(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sluice_executable(), "definition", "add", ws, *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = add(
        "--format",
        "bunce",
        "--name",
        "Purchase",
        "--param",
        "date_purchased:timestamp",
        "--param",
        "total:number",
    )
    assert done.returncode == 0, done.stderr
    definition_id = json.loads(done.stdout)["definition_id"]
    found = find_definition(engine, ws, "bunce", definition_id=definition_id)
    assert found is not None
    assert found.params == {"date_purchased": "timestamp", "total": "number"}
    tap = add("--format", "clevertap", "--name", "Program Released", "--required", "program_id")
    assert tap.returncode == 0, tap.stderr
    for bad in (
        ["--format", "bunce", "--name", "Purchase"],  # exists already
        ["--format", "bunce", "--name", "X", "--param", "n:float"],
        ["--format", "clevertap", "--name", "Y", "--param", "a:string"],
        ["--format", "bunce", "--name", "Z", "--id", "not-a-uuid"],
    ):
        refused = add(*bad)
        assert refused.returncode != 0 and "Error" in refused.stderr
    engine.dispose()


def test_automation_commands(database_url: str) -> None:
    from sluice.store.engine import make_engine
    from sluice.store.workspaces import create_workspace

    engine = make_engine(database_url)
    ws = create_workspace(engine, "automated").workspace_id
    engine.dispose()
    env = {**os.environ, "SLUICE_DATABASE_URL": database_url}
    env.pop("SLUICE_ALLOW_PRIVATE_WEBHOOKS", None)

    def sluice(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sluice_executable(), *args],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    hook = ["automation", "add", ws, "--on", "Signed Up", "--webhook", "http://127.0.0.1:9/h"]
    refused = sluice(*hook, "--json")
    assert refused.returncode == 1
    assert "SLUICE_ALLOW_PRIVATE_WEBHOOKS" in refused.stderr
    added = sluice(*hook, "--where", "plan=pro", "--json", SLUICE_ALLOW_PRIVATE_WEBHOOKS="true")
    assert added.returncode == 0, added.stderr
    webhook = json.loads(added.stdout)
    assert webhook["automation_id"].startswith("au_") and webhook["secret"].startswith("whsec_")
    task = sluice("automation", "add", ws, "--on", "Signed Up", "--task", "crm.sync", "--json")
    assert task.returncode == 0, task.stderr
    assert json.loads(task.stdout)["secret"] is None

    for usage_error in (
        ["--bulletin", "--task", "crm.sync"],
        [],
        ["--bulletin", "--queue", "q"],
        ["--bulletin", "--where", "plan"],
    ):
        wrong = sluice("automation", "add", ws, "--on", "Signed Up", *usage_error)
        assert wrong.returncode == 2, (usage_error, wrong.stderr)
    unknown = sluice("automation", "add", "no-such-workspace", "--on", "X", "--bulletin")
    assert unknown.returncode == 1 and "unknown workspace" in unknown.stderr

    listed = json.loads(sluice("automation", "list", ws, "--json").stdout)
    assert [(a["action"], a["on"], a["where"], a["status"], a["queue"]) for a in listed] == [
        ("webhook", "Signed Up", {"plan": "pro"}, "active", None),
        ("task", "Signed Up", {}, "active", "sluice.automations"),
    ]
    assert sluice("automation", "disable", webhook["automation_id"]).returncode == 0
    assert sluice("automation", "disable", webhook["automation_id"]).returncode == 1
    listed = json.loads(sluice("automation", "list", ws, "--json").stdout)
    assert (listed[0]["status"], listed[0]["disabled_reason"]) == (
        "disabled",
        "disabled by an operator",
    )
    assert "Signed Up" in sluice("automation", "list", ws).stdout
    assert json.loads(sluice("deliveries", ws, "--json").stdout) == []
