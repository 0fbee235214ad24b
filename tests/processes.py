"""The Sluice processes the end-to-end tests start: the same commands docker-compose runs
(``tests/unit/test_compose.py`` checks that they agree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

MIGRATE_COMMAND = ["sluice", "migrate"]
GATEWAY_COMMAND = ["sluice", "gateway", "--host", "0.0.0.0", "--port", "8000"]
WORKER_COMMAND = [
    "sluice",
    "worker",
    "--no-deliver",
    "--queues",
    "sluice.ingest",
    "--concurrency",
    "2",
    "--loglevel",
    "INFO",
]
# Deliveries wait on other people's endpoints: a deliverer of their own (the worker above
# does not deliver).
DELIVERY_WORKER_COMMAND = ["sluice", "deliverer"]


def sluice_executable() -> str:
    beside_python = Path(sys.executable).with_name("sluice")
    found = str(beside_python) if beside_python.exists() else shutil.which("sluice")
    if found is None:
        raise RuntimeError("the sluice command is not installed (run `make test`)")
    return found


def with_option(command: Sequence[str], option: str, value: str) -> list[str]:
    """The command with ``option``'s value replaced (tests bind loopback and free ports)."""
    args = list(command)
    index = args.index(option)
    args[index + 1] = value
    return args


class SluiceProcess:
    """One ``sluice`` subcommand as a child process, its output in a log file."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.command = [sluice_executable(), *command[1:]]
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SluiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout_s: float = 60) -> None:
        self._wait(lambda: needle in self.log_text(), f"{needle!r} in the log", timeout_s)

    def wait_for_http(self, url: str, timeout_s: float = 60) -> None:
        def answered() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        self._wait(answered, f"200 from {url}", timeout_s)

    def _wait(self, done: object, what: str, timeout_s: float) -> None:
        assert callable(done)
        deadline = time.monotonic() + timeout_s
        while not done():
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.command} exited ({self.process.returncode}) "
                    f"before {what}:\n{self.log_text()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {timeout_s}s:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)

    def run_to_completion(self, timeout_s: float = 120) -> None:
        self.start()
        assert self.process is not None
        code = self.process.wait(timeout=timeout_s)
        if code != 0:
            raise RuntimeError(f"{self.command} failed ({code}):\n{self.log_text()[-4000:]}")

    def stop(self, timeout_s: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def children_of(parent: int, marker: str = "") -> list[int]:
    """The processes whose parent is ``parent`` and whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == parent and marker in cmdline:
            found.append(int(entry.name))
    return sorted(found)
