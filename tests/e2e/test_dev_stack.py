"""``sluice dev`` as a newcomer and a process manager meet it: stopped by SIGTERM or SIGHUP
(or even SIGKILL) it leaves no process behind; its Redis is started again when it dies; and
commands run in its directory, with nothing exported, use its database and Redis. A command
against a database without the schema says to run `sluice migrate`, without a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from sluice.cli import devenv
from sluice.cli.embedded_redis import free_port, port_is_free
from tests.processes import children_of, sluice_executable

MARK = "DEV_STACK_TEST_MARK"  # in every process of one stack's environment
WORKER_READY = re.compile(r"\] celery@\S+ ready\.")  # the worker's line, not the banner's
STOP_BOUND_S = 60.0  # the worker's warm shutdown and Redis's, well within the stop timeouts


def _clean_env() -> dict[str, str]:
    """The suite may export SLUICE_* settings of its own: none of them here."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}


@dataclass
class DevStack:
    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    mark: str
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / devenv.DEFAULT_DIR

    def settings(self) -> dict[str, str]:
        return devenv.read(self.data_dir / devenv.FILE_NAME)

    def redis_port(self) -> int:
        return int(self.settings()["SLUICE_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def marked(self) -> list[int]:
        """Every process of this stack, even one that lost its parent: the environment holds
        the stack's mark, or (Redis writes its title over its environment) the command line
        names the stack's Redis address."""
        needle = f"{MARK}={self.mark}".encode()
        redis_address = f"redis-server 127.0.0.1:{self.redis_port()}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.process.pid:
                try:
                    environ = (entry / "environ").read_bytes()
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue  # gone meanwhile
                ours = needle in environ.split(b"\0") or redis_address in cmdline
                if ours and not _is_zombie(int(entry.name)):
                    found.append(int(entry.name))
        return sorted(found)


def _is_zombie(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _descendants(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *_descendants(child)]
    return found


@contextmanager
def running_dev(directory: Path, *, port_from_env: bool = False) -> Iterator[DevStack]:
    """``sluice dev`` run in ``directory`` (its data in ``directory/.sluice``, the default),
    on a free port (``--port``, or SLUICE_GATEWAY_PORT), its gateway answering."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    directory.mkdir(parents=True, exist_ok=True)
    port, mark = free_port(), uuid.uuid4().hex
    log_path = directory / "dev.log"
    chosen = {"SLUICE_GATEWAY_PORT": str(port)} if port_from_env else {}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sluice_executable(), "dev", *([] if port_from_env else ["--port", str(port)])],
            cwd=directory,
            env={**_clean_env(), MARK: mark, **chosen},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    stack = DevStack(process, directory, port, mark, log_path)
    try:
        _wait(lambda: _answers(f"{stack.base}/livez"), stack, "the gateway to answer")
        _wait(lambda: WORKER_READY.search(stack.log.read_text()), stack, "the worker to be ready")
        yield stack
    finally:
        if process.poll() is None:
            process.kill()  # a failed test: the parent-death signal ends the children
            process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(done: object, stack: DevStack, what: str, timeout_s: float = 90) -> None:
    assert callable(done)
    deadline = time.monotonic() + timeout_s
    while not done():
        if stack.process.poll() is not None:
            pytest.fail(f"sluice dev exited ({stack.process.returncode}):\n{stack.log_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:g} s for {what}:\n{stack.log_text()}")
        time.sleep(0.1)


def _assert_nothing_left(stack: DevStack, pids: list[int], ports: list[int]) -> None:
    deadline = time.monotonic() + STOP_BOUND_S
    while [pid for pid in pids if not _is_zombie(pid)] or stack.marked():
        assert time.monotonic() < deadline, f"left running: {stack.marked()}\n{stack.log_text()}"
        time.sleep(0.1)
    for port in ports:
        assert port_is_free(port), f"port {port} still taken"


def _redis_answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def _sluice(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sluice_executable(), *args],
        cwd=directory,
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sigterm_stops_every_child_and_a_dead_redis_is_started_again(tmp_path: Path) -> None:
    with running_dev(tmp_path / "project") as stack:
        redis_port = stack.redis_port()
        [embedded] = children_of(stack.process.pid, "redis-server")
        with redis.Redis(port=redis_port) as client:
            client.set("kept", "yes")
        time.sleep(1.5)  # appendfsync everysec: the write is in the AOF file before the kill
        os.kill(embedded, signal.SIGKILL)
        _wait(
            lambda: (
                children_of(stack.process.pid, "redis-server") not in ([], [embedded])
                and _redis_answers(redis_port)
            ),
            stack,
            "the embedded Redis to be started again",
        )
        with redis.Redis(port=redis_port) as client:
            assert client.get("kept") == b"yes"  # the same port, the same data
        assert "embedded Redis exited with code -9" in stack.log.read_text()
        # The stack goes on deciding events (the worker reconnects, or is started again).
        demo = json.loads((stack.data_dir / "demo-workspace.json").read_text())
        auth = (demo["write_key"], "")
        sent = httpx.post(f"{stack.base}/v1/track", auth=auth, json={"userId": "u1", "event": "E"})
        assert sent.status_code == 200, sent.text
        status = f"{stack.base}/v1/events/{sent.json()['message_id']}"
        _wait(
            lambda: httpx.get(status, auth=auth).json()["status"] == "accepted",
            stack,
            "the event to be accepted",
        )

        _wait(lambda: len(_descendants(stack.process.pid)) >= 4, stack, "the worker's pool")
        pids = _descendants(stack.process.pid)  # Redis, the worker, its two pool processes
        assert set(pids) <= set(stack.marked())
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(timeout=STOP_BOUND_S) == -signal.SIGTERM
        _assert_nothing_left(stack, pids, [stack.port, redis_port])
        assert "Warm shutdown" in stack.log.read_text()  # the worker was stopped, not killed


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT])
def test_a_closed_terminal_or_ctrl_c_stops_every_child_too(
    tmp_path: Path, signum: signal.Signals
) -> None:
    with running_dev(tmp_path / "project") as stack:
        pids, ports = _descendants(stack.process.pid), [stack.port, stack.redis_port()]
        stack.process.send_signal(signum)
        assert stack.process.wait(timeout=STOP_BOUND_S) == -signum
        _assert_nothing_left(stack, pids, ports)


def test_sluice_dev_killed_outright_takes_its_children_along(tmp_path: Path) -> None:
    with running_dev(tmp_path / "project") as stack:
        pids, ports = _descendants(stack.process.pid), [stack.port, stack.redis_port()]
        stack.process.kill()
        stack.process.wait(timeout=30)
        _assert_nothing_left(stack, pids, ports)


def test_commands_beside_the_dev_stack_use_its_database_with_nothing_exported(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "project"
    with running_dev(directory) as stack:
        created = _sluice(directory, "workspace", "create", "x", "--json")
        assert created.returncode == 0, created.stderr
        notes = [line for line in created.stderr.splitlines() if "dev stack" in line]
        assert notes == ["sluice: using the dev stack's database and Redis (.sluice/dev.env)"]
        workspace = json.loads(created.stdout)
        # The dev gateway takes the new write key: the workspace is in the dev database.
        sent = httpx.post(
            f"{stack.base}/v1/track",
            auth=(workspace["write_key"], ""),
            json={"userId": "u1", "event": "Signed Up"},
        )
        assert sent.status_code == 200, sent.text
        with sqlite3.connect(stack.data_dir / "sluice.db") as db:
            names = [row[0] for row in db.execute("SELECT name FROM workspaces")]
        assert "x" in names
        assert not (directory / "sluice.db").exists()  # no stray database beside it
        # The stack allows webhooks to localhost, and so do the commands beside it.
        hooked = _sluice(
            directory,
            *("automation", "add", workspace["workspace_id"], "--on", "Signed Up"),
            *("--webhook", "http://127.0.0.1:9/hook", "--json"),
        )
        assert hooked.returncode == 0, hooked.stderr

        # Explicit settings win over the file: this one has no schema.
        empty = tmp_path / "empty.db"
        sqlite3.connect(empty).close()
        refused = _sluice(directory, "stats", SLUICE_DATABASE_URL=f"sqlite:///{empty}")
        assert refused.returncode != 0
        assert "dev stack" not in refused.stderr
        assert "run `sluice migrate`" in refused.stderr and str(empty) in refused.stderr
        stack.process.send_signal(signal.SIGTERM)
        stack.process.wait(timeout=STOP_BOUND_S)

    # Stopped, the stack's database is still there, and commands still find it.
    counted = _sluice(directory, "stats", "--json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["total"]["events"] >= 0


def test_the_dev_stack_takes_its_port_from_the_environment_and_passes_its_checks(
    tmp_path: Path,
) -> None:
    """SLUICE_GATEWAY_PORT chooses the port; the health checks beside the stack find its
    gateway (dev.env) and its deliverer's heartbeat; the banner gives the broker URL a
    Python producer needs."""
    directory = tmp_path / "project"
    with running_dev(directory, port_from_env=True) as stack:
        broker_url = stack.settings()["SLUICE_BROKER_URL"]
        assert f"broker     {broker_url}" in stack.log.read_text()
        gateway = _sluice(directory, "check", "gateway")
        assert gateway.returncode == 0, gateway.stdout + gateway.stderr
        assert "gateway: ready" in gateway.stdout
        assert until_check(["deliverer"], directory, _sluice), stack.log_text()
        heartbeat = Path(stack.settings()["SLUICE_DELIVERER_HEARTBEAT_PATH"])
        assert heartbeat.parent == stack.data_dir
        stack.process.send_signal(signal.SIGTERM)
        stack.process.wait(timeout=STOP_BOUND_S)
    assert not heartbeat.exists()  # a stopped stack fails its check at once


def until_check(
    args: list[str],
    directory: Path,
    run: Callable[..., subprocess.CompletedProcess[str]],
    timeout_s: float = 60,
) -> bool:
    """Whether ``sluice check ARGS`` passes within ``timeout_s`` (the deliverer starts once
    the worker's pool is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if run(directory, "check", *args).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def test_an_unmigrated_database_gets_run_sluice_migrate_not_a_traceback(tmp_path: Path) -> None:
    unmigrated = tmp_path / "old.db"
    with sqlite3.connect(unmigrated) as db:
        db.execute("CREATE TABLE unrelated (x INTEGER)")
    missing = tmp_path / "missing.db"
    for path in (unmigrated, missing):
        url = f"sqlite:///{path}"
        commands = (
            ["stats"],
            ["workspace", "create", "x", "--json"],
            ["automation", "list"],
            ["dlq", "list"],
            ["dlq", "replay", "--all", "--no-wait"],
        )
        for command in commands:
            done = _sluice(tmp_path, *command, SLUICE_DATABASE_URL=url)
            assert done.returncode == 1, (command, done.stdout, done.stderr)
            assert "run `sluice migrate`" in done.stderr and url in done.stderr
            assert "Traceback" not in done.stderr and done.stdout == ""
    assert not missing.exists()  # the check does not create the file
    assert not (tmp_path / "sluice.db").exists()

    migrated = _sluice(tmp_path, "migrate", SLUICE_DATABASE_URL=f"sqlite:///{unmigrated}")
    assert migrated.returncode == 0, migrated.stderr
    counted = _sluice(tmp_path, "stats", SLUICE_DATABASE_URL=f"sqlite:///{unmigrated}")
    assert counted.returncode == 0, counted.stderr


def test_a_password_in_the_database_url_is_masked_in_the_message(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://sluice:s3cret@127.0.0.1:{free_port()}/nowhere"
    done = _sluice(tmp_path, "stats", SLUICE_DATABASE_URL=url)
    assert done.returncode == 1
    assert "s3cret" not in done.stderr and "sluice:***@127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr
