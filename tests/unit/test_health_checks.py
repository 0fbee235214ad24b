"""The deliverer's heartbeat and the ``sluice check`` commands that need no service
(docs/operations.md). Against real processes: tests/e2e/test_checks_e2e.py."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.checks import _checks_of
from sluice.cli.embedded_redis import free_port
from sluice.cli.root import main
from sluice.delivery.heartbeat import Heartbeat, heartbeat_age_s
from sluice.ops.health import short_reason
from sluice.settings import Settings


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_heartbeat_touches_its_file_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    heartbeat = Heartbeat(path)
    assert heartbeat_age_s(path) is None
    heartbeat.beat()
    first = heartbeat_age_s(path)
    assert first is not None and first < 5
    age(path, 100)
    heartbeat.beat()  # within the second: not touched again
    again = heartbeat_age_s(path)
    assert again is not None and again >= 99
    heartbeat.stop()
    assert not path.exists()
    heartbeat.stop()  # stopping twice is harmless


def test_a_heartbeat_that_cannot_write_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("sluice.delivery.heartbeat.BEAT_EVERY_S", 0.0)  # every beat touches
    directory = tmp_path / "missing-dir"
    path = directory / "beat"
    heartbeat = Heartbeat(path)

    def warnings() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "sluice.delivery.heartbeat" and r.levelno == logging.WARNING
        ]

    with caplog.at_level(logging.WARNING):
        heartbeat.beat()  # the directory is missing: no exception
        heartbeat.beat()
        assert len(warnings()) == 1  # once per run of failures
        assert str(path) in warnings()[0]
        assert heartbeat_age_s(path) is None
        directory.mkdir()  # writable again: the next beat touches the file
        heartbeat.beat()
        age_s = heartbeat_age_s(path)
        assert age_s is not None and age_s < 5
        path.unlink()
        directory.rmdir()
        heartbeat.beat()  # a new run of failures is told again
        assert len(warnings()) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *args])
    return result.exit_code, result.output.strip()


def test_check_deliverer_reads_the_age_of_the_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    code, output = check("deliverer", "--path", str(path))
    assert code == 1 and output.startswith("deliverer: no heartbeat at")
    path.touch()
    code, output = check("deliverer", "--path", str(path))
    assert code == 0 and output.startswith("deliverer: heartbeat")
    age(path, 45)
    code, output = check("deliverer", "--path", str(path))
    assert code == 1 and "45 s old (over 30 s)" in output
    code, _ = check("deliverer", "--path", str(path), "--max-age-s", "60")
    assert code == 0


def test_check_deliverer_reads_the_path_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "elsewhere"
    monkeypatch.setenv("SLUICE_DELIVERER_HEARTBEAT_PATH", str(path))
    assert Settings().deliverer_heartbeat_path == path
    path.touch()
    assert check("deliverer")[0] == 0


def test_the_heartbeat_lives_in_the_temp_dir_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_DELIVERER_HEARTBEAT_PATH", raising=False)
    path = Settings().deliverer_heartbeat_path
    assert path.parent == Path(tempfile.gettempdir())


def test_check_gateway_fails_when_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}/readyz"
    code, output = check("gateway", "--url", url, "--timeout-s", "2")
    assert code == 1 and output.startswith(f"gateway: no answer from {url}")


def test_a_readyz_answer_is_summed_up_failing_parts_first() -> None:
    body = b'{"status": "not ready", "checks": {"redis": "ok", "database": "timed out"}}'
    assert _checks_of(body) == "database: timed out, redis: ok"
    assert _checks_of(b"not json") == ""


def test_reasons_are_short_and_name_the_error() -> None:
    assert short_reason(ConnectionError("refused\nmore")) == "ConnectionError: refused"
    assert short_reason(TimeoutError()) == "TimeoutError"
    assert len(short_reason(ValueError("x" * 500))) == 120
