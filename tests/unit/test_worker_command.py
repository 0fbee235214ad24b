"""``sluice worker`` exits with the status of Celery's worker command, so that a supervisor
(compose, ``sluice dev``) sees a worker that stopped on an error as a failure; and the
collector tuning every server process applies (``sluice.worker.collector``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import Celery
from click.testing import CliRunner

from sluice.cli.commands import main


@pytest.mark.parametrize("status", [0, 1, 3])
def test_the_worker_command_exits_with_celerys_status(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    calls: list[list[str]] = []

    def start(self: Celery, argv: list[str] | None = None) -> int:
        calls.append(list(argv or []))
        return status

    monkeypatch.setattr(Celery, "start", start)
    monkeypatch.setattr("sluice.worker.collector.tune_collector", lambda: None)
    monkeypatch.setenv("SLUICE_REDIS_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(main, ["worker", "--concurrency", "1"])
    assert result.exit_code == status, result.output
    assert calls == [["worker", "--concurrency", "1", "--loglevel=INFO"]]


def test_the_collector_is_tuned_for_a_server_process() -> None:
    # In a process of its own: freezing this one's objects would outlive the test.
    probe = (
        "import gc; from sluice.worker.collector import tune_collector; tune_collector(); "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["50000", "True"]
