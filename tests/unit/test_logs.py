"""JSON logs (sluice.logs): one object a line, with the ids of the work under way."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.logs import (
    ContextFilter,
    bind,
    current_context,
    json_formatter,
    json_logging_config,
    log_context,
    uvicorn_log_config,
)
from sluice.settings import Settings
from tests.processes import sluice_executable


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("sluice.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_context_of_its_block(lines) -> None:
    logger, stream = lines
    logger.info("before")
    with log_context(batch_id="b-1", workspace_id="ws-1"):
        logger.info("batch %s: %d events", "b-1", 3)
        with log_context(batch_id="b-1.d"):
            logger.warning("deferred")
        logger.info("after the inner block")
    logger.info("after")

    first, inside, inner, restored, last = records(stream)
    assert set(first) == {"timestamp", "level", "logger", "message"}
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "sluice.test.logs",
        "before",
    )
    assert str(first["timestamp"]).endswith("+00:00")
    assert inside["message"] == "batch b-1: 3 events"
    assert (inside["batch_id"], inside["workspace_id"]) == ("b-1", "ws-1")
    assert (inner["level"], inner["batch_id"], inner["workspace_id"]) == (
        "WARNING",
        "b-1.d",
        "ws-1",
    )
    assert restored["batch_id"] == "b-1"
    assert "batch_id" not in last and "workspace_id" not in last
    assert current_context() == {}


def test_extra_fields_win_and_an_exception_comes_with_its_traceback(lines) -> None:
    logger, stream = lines
    with log_context(batch_id="b-2", message_id="from-the-context"):
        logger.info("event discarded", extra={"message_id": "m-7", "workspace_id": "ws-2"})
        try:
            raise RuntimeError("the database went away")
        except RuntimeError:
            logger.exception("batch failed")

    discarded, failed = records(stream)
    assert (discarded["message_id"], discarded["workspace_id"], discarded["batch_id"]) == (
        "m-7",
        "ws-2",
        "b-2",
    )
    assert failed["level"] == "ERROR"
    assert failed["message_id"] == "from-the-context"
    assert "RuntimeError: the database went away" in str(failed["exception"])
    assert "Traceback" in str(failed["exception"])


def test_each_asyncio_task_keeps_its_own_ids(lines) -> None:
    # The deliverer binds an attempt's ids in the attempt's own task, the gateway a
    # request's workspace in the request's: neither leaks into another's lines.
    logger, stream = lines

    async def attempt(trigger_id: str, pause_s: float) -> None:
        bind(trigger_id=trigger_id, workspace_id=f"ws-{trigger_id}")
        await asyncio.sleep(pause_s)
        logger.info("attempt %s", trigger_id)

    async def main() -> None:
        await asyncio.gather(attempt("t1", 0.02), attempt("t2", 0.0))
        logger.info("the loop")

    asyncio.run(main())
    by_message = {r["message"]: r for r in records(stream)}
    assert (by_message["attempt t1"]["trigger_id"], by_message["attempt t1"]["workspace_id"]) == (
        "t1",
        "ws-t1",
    )
    assert by_message["attempt t2"]["trigger_id"] == "t2"
    assert "trigger_id" not in by_message["the loop"]


def test_the_setting_and_the_uvicorn_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_LOG_FORMAT", raising=False)
    assert Settings().log_format == "text"
    monkeypatch.setenv("SLUICE_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("SLUICE_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()

    from uvicorn.config import LOGGING_CONFIG

    assert uvicorn_log_config("text") is LOGGING_CONFIG  # uvicorn's own, as before
    config = uvicorn_log_config("json")
    assert config["root"]["handlers"] == ["stderr"]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True}


def test_the_json_config_applies_to_a_logger_configured_from_it() -> None:
    stream = io.StringIO()
    config = json_logging_config("INFO")
    config["handlers"]["stderr"]["stream"] = stream
    del config["root"]  # leave the test run's root logger be
    config["loggers"] = {"sluice.test.dict": {"handlers": ["stderr"], "propagate": False}}
    logging.config.dictConfig(config)
    try:
        with log_context(workspace_id="ws-9"):
            logging.getLogger("sluice.test.dict").warning("from dictConfig")
    finally:
        logging.getLogger("sluice.test.dict").handlers.clear()
    (line,) = records(stream)
    assert (line["message"], line["workspace_id"], line["level"]) == (
        "from dictConfig",
        "ws-9",
        "WARNING",
    )


def test_a_group_commit_carries_no_request_s_ids() -> None:
    # One queue write holds the events of several requests, of several workspaces: its log
    # lines (a refused publish, sluice.producer.transport) must not carry the workspace the
    # first request of the group bound (sluice.gateway.state).
    from sluice.gateway.group_commit import GroupCommitter

    seen: list[dict[str, str]] = []

    def publish(events: object) -> list[str]:
        seen.append(current_context())
        return [f"m{i}" for i, _ in enumerate(events)]  # type: ignore[arg-type]

    async def request(committer: GroupCommitter, workspace_id: str) -> list[str]:
        bind(workspace_id=workspace_id)
        return await committer.submit([object()])  # type: ignore[list-item]

    async def main() -> None:
        committer = GroupCommitter(publish, window_s=0.01)
        await asyncio.gather(request(committer, "ws-a"), request(committer, "ws-b"))
        full = GroupCommitter(publish, window_s=60, max_events=1)  # flushed by the request
        await asyncio.create_task(request(full, "ws-c"))

    asyncio.run(main())
    assert seen == [{}, {}]


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("WARNING", False), ("DEBUG", True)])
def test_alembics_plugin_lines_show_only_at_debug(tmp_path: Path, level: str, shown: bool) -> None:
    """``sluice migrate`` (and each start that upgrades) loads Alembic's plugins, which log one
    line each at INFO: kept out of the log unless it is at DEBUG; the migrations' own lines
    stay at INFO."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'sluice.db'}"
    env["SLUICE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # not used by migrate
    done = subprocess.run(
        [sluice_executable(), "--log-level", level, "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert ("alembic.runtime.plugins" in done.stderr) is shown, done.stderr
    assert ("Running upgrade" in done.stderr) is (level != "WARNING"), done.stderr
