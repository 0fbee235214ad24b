"""Keeping the dev stack's child processes running, and never leaving them behind.

A worker's main process can die on its own: a Redis restart under load can end it with
kombu's ``Unrecoverable error`` (docs/reliability.md #11), and a kill or an out-of-memory
does the same; so can the embedded Redis. Compose restarts its containers; ``sluice dev``
restarts its children here. A child that keeps dying young is started again after a delay
that doubles, up to ``MAX_DELAY_S``, so a broken set-up does not spin.

Every child is started by ``spawn``: in a process group of its own, so that a terminal's
Ctrl-C or hang-up reaches only ``sluice dev``, which stops its children in order (workers
before the Redis they drain into); and, on Linux, with SIGTERM as its parent-death signal,
so that a ``sluice dev`` killed with SIGKILL takes its children with it (a Celery worker's
pool processes already die with their worker: celery/concurrency/prefork.py sets theirs).
The kernel sends that signal when the *thread* that started the child ends: children
restarted by the watcher thread get it when ``stop`` ends that thread, just before it
stops them anyway.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that ran this long starts again at once if it dies
CHECK_EVERY_S = 0.5
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _parent_death_signal() -> Callable[[], None] | None:
    """What a child runs between fork and exec to die with its parent; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the child
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def spawn(command: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child of ``sluice dev`` (module docstring): its own process group, dying
    with the thread that started it, no standard input."""
    return subprocess.Popen(
        list(command),
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        process_group=0,
        preexec_fn=_parent_death_signal(),  # system calls only, the function found before
    )


@dataclass
class _Child:
    command: Sequence[str]
    name: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay_s: float = 0.0
    due_at: float = 0.0  # when a dead child is started again
    restarts: int = 0


class Supervisor:
    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        env: Mapping[str, str],
        *,
        names: Sequence[str] | None = None,
    ) -> None:
        labels = names or [" ".join(command[-4:]) for command in commands]
        self._children = [
            _Child(list(command), name) for command, name in zip(commands, labels, strict=True)
        ]
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

    def running(self) -> bool:
        """Whether every child has a live process now."""
        with self._lock:
            return all(c.process is not None and c.process.poll() is None for c in self._children)

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
        child.process = spawn(child.command, self._env)
        child.started_at = time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.wait(CHECK_EVERY_S):
            now = time.monotonic()
            with self._lock:
                for child in self._children:
                    try:
                        self._tend(child, now)
                    except OSError:  # could not start it (e.g. out of memory): next time
                        log.exception("could not start %s again", child.name)
                        child.due_at = now + MAX_DELAY_S

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
            child.name,
            process.returncode,
            lived_s,
            child.delay_s,
        )
