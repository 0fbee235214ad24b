"""A port that is taken, as a newcomer meets it: ``sluice gateway`` and ``sluice dev`` end
with status 1 and one line naming the address and how to choose another, leaving no
process behind (sluice.cli.ports)."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.cli.embedded_redis import free_port
from tests.conftest import sluice_env
from tests.e2e.test_dev_stack import MARK, _clean_env
from tests.processes import sluice_executable

EXIT_WITHIN_S = 60  # the command ends on its own: a hang fails the test here


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port a real server listens on."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        yield server.getsockname()[1]


def _marked(mark: str) -> list[int]:
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_sluice_gateway_on_a_busy_port_exits_1_with_one_line(
    busy_port: int, redis_url: str, database_url: str
) -> None:
    result = subprocess.run(
        [sluice_executable(), "gateway", "--port", str(busy_port)],
        env={**_clean_env(), **sluice_env(redis_url, database_url)},
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN_S,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = _one_line(result.stdout + result.stderr)
    assert f"127.0.0.1:{busy_port}" in line and "SLUICE_GATEWAY_PORT" in line, line


def test_sluice_dev_on_a_busy_port_exits_1_with_one_line_and_no_children(
    busy_port: int, tmp_path: Path
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    mark = uuid.uuid4().hex
    process = subprocess.Popen(
        [sluice_executable(), "dev"],
        cwd=tmp_path,
        env={**_clean_env(), MARK: mark, "SLUICE_GATEWAY_PORT": str(busy_port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=EXIT_WITHIN_S)
    finally:
        if process.poll() is None:
            process.kill()  # a hang: its children die with it (their parent-death signal)
            process.wait()
    assert process.returncode == 1, output
    line = _one_line(output)
    assert f"127.0.0.1:{busy_port}" in line and "--port" in line, line
    assert _marked(mark) == []
