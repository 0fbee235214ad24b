"""``sluice dev``'s supervisor: a dead child is started again, sooner when it had run well,
later (doubling, capped) while it keeps dying young. Time is a parameter of ``_tend``. And a
child never outlives the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from sluice.cli.supervise import (
    CHECK_EVERY_S,
    FIRST_DELAY_S,
    HEALTHY_AFTER_S,
    MAX_DELAY_S,
    Supervisor,
)

DIES = [sys.executable, "-c", "raise SystemExit(3)"]


def test_a_child_dying_young_waits_longer_each_time_and_a_healthy_one_not_at_all() -> None:
    supervisor = Supervisor([DIES], os.environ)
    [child] = supervisor._children
    supervisor._spawn(child)
    delays: list[float] = []
    for _ in range(7):
        assert child.process is not None
        child.process.wait(timeout=30)
        started = child.started_at
        supervisor._tend(child, started + 1)  # it lived one second: died young
        assert child.process is None
        delays.append(child.delay_s)
        supervisor._tend(child, child.due_at - 0.01)  # not yet due
        assert child.process is None
        supervisor._tend(child, child.due_at)  # due: started again
    assert delays == [FIRST_DELAY_S * 2**n for n in range(5)] + [MAX_DELAY_S, MAX_DELAY_S]
    assert child.restarts == 7
    assert child.process is not None
    child.process.wait(timeout=30)
    supervisor._tend(child, child.started_at + HEALTHY_AFTER_S)  # it had run well
    assert child.delay_s == 0.0
    supervisor.stop()


def test_stop_ends_the_children_and_restarts_none() -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor([sleeper, sleeper], os.environ).start()
    pids = supervisor.pids()
    assert len(pids) == 2
    supervisor.stop(timeout_s=10)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)
    assert supervisor.restarts() == 0


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_child_dies_with_the_process_that_started_it_even_when_that_one_is_killed() -> None:
    """SIGKILL cannot be caught: the child's parent-death signal ends it (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux's")
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sluice.cli.supervise import spawn; "
            "child = spawn([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(child.pid, flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    child = int(starter.stdout.readline())
    assert os.getpgid(child) == child  # a process group of its own: no terminal signals
    starter.kill()
    starter.wait(timeout=30)
    starter.stdout.close()
    deadline = time.monotonic() + 30
    while not _is_zombie_or_gone(child):
        assert time.monotonic() < deadline, "the child outlived its killed parent"
        time.sleep(0.05)


def test_the_watcher_survives_a_child_that_cannot_be_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor([["/nonexistent/command"]], os.environ, names=["missing"])
    [child] = supervisor._children  # not started yet: due at once
    stopper = threading.Timer(3 * CHECK_EVERY_S, supervisor._stopping.set)
    stopper.start()
    supervisor._watch()  # returns when stopped; would raise without the guard
    stopper.join()
    assert "could not start missing again" in caplog.text
    assert child.due_at > time.monotonic()
