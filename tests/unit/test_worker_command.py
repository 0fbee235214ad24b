"""``sluice worker`` exits with the status of Celery's worker command, so that a supervisor
(compose, ``sluice dev``) sees a worker that stopped on an error as a failure; and the
collector tuning every server process applies (``sluice.gc_tuning``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery.worker import WorkController
from click.testing import CliRunner

from sluice.cli.root import main


@pytest.mark.filterwarnings("ignore::celery.exceptions.SecurityWarning")  # CI runs as root
# Each run makes a new app in this one process; the task registry remembers the last one.
@pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")
@pytest.mark.parametrize("status", [0, 1, 3])
def test_the_worker_command_exits_with_the_workers_status(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """Through Celery's real ``worker`` command, which ends with ``ctx.exit(exitcode)``;
    only the worker's own run is replaced (it would consume a broker)."""
    ran: list[int] = []

    def start(self: WorkController) -> None:
        ran.append(self.concurrency)
        self.exitcode = status

    monkeypatch.setattr(WorkController, "start", start)
    monkeypatch.setattr("sluice.gc_tuning.tune_collector", lambda: None)
    monkeypatch.setenv("SLUICE_REDIS_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(main, ["worker", "--concurrency", "1", "--pool", "solo"])
    assert ran == [1], (result.output, repr(result.exception))
    assert result.exit_code == status, result.output


def test_the_collector_is_tuned_for_a_server_process() -> None:
    # In a process of its own: freezing this one's objects would outlive the test.
    probe = (
        "import gc; from sluice.gc_tuning import tune_collector; tune_collector(); "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["50000", "True"]
