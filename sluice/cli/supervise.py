"""Keeping the dev stack's worker processes running.

A worker's main process can die on its own: a Redis restart under load can end it with
kombu's ``Unrecoverable error`` (docs/reliability.md #11), and a kill or an out-of-memory
does the same. Compose restarts its containers; ``sluice dev`` restarts its children here.
A child that keeps dying young is started again after a delay that doubles, up to
``MAX_DELAY_S``, so a broken set-up does not spin.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that ran this long starts again at once if it dies
CHECK_EVERY_S = 0.5


@dataclass
class _Child:
    command: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay_s: float = 0.0
    due_at: float = 0.0  # when a dead child is started again
    restarts: int = 0


class Supervisor:
    def __init__(self, commands: Sequence[Sequence[str]], env: Mapping[str, str]) -> None:
        self._children = [_Child(list(command)) for command in commands]
        self._env = dict(env)
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Supervisor:
        with self._lock:
            for child in self._children:
                self._spawn(child)
        self._watcher.start()
        return self

    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._children if c.process is not None]

    def restarts(self) -> int:
        return sum(child.restarts for child in self._children)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop restarting, then end every child: SIGTERM (a warm shutdown), SIGKILL after
        ``timeout_s``."""
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()
        with self._lock:
            running = [c.process for c in self._children if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        for process in running:
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _spawn(self, child: _Child) -> None:
        child.process = subprocess.Popen(child.command, env=self._env)
        child.started_at = time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.wait(CHECK_EVERY_S):
            now = time.monotonic()
            with self._lock:
                for child in self._children:
                    self._tend(child, now)

    def _tend(self, child: _Child, now: float) -> None:
        process = child.process
        if process is None or process.poll() is None:
            if process is None and now >= child.due_at:
                self._spawn(child)
                child.restarts += 1
            return
        lived_s = now - child.started_at
        child.delay_s = (
            0.0
            if lived_s >= HEALTHY_AFTER_S
            else min(max(child.delay_s * 2, FIRST_DELAY_S), MAX_DELAY_S)
        )
        child.due_at = now + child.delay_s
        child.process = None
        log.warning(
            "%s exited with code %s after %.0f s; starting it again in %.0f s",
            " ".join(child.command[-4:]),
            process.returncode,
            lived_s,
            child.delay_s,
        )
