"""``sluice worker`` exits with the status of Celery's worker command, so that a supervisor
(compose, ``sluice dev``) sees a worker that stopped on an error as a failure."""

from __future__ import annotations

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
    monkeypatch.setenv("SLUICE_REDIS_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(main, ["worker", "--concurrency", "1"])
    assert result.exit_code == status, result.output
    assert calls == [["worker", "--concurrency", "1", "--loglevel=INFO"]]
