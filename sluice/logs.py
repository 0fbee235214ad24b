"""Logging for every process: the ``sluice`` commands, the gateway (uvicorn's loggers
included) and Celery workers (their tasks included), in the format ``SLUICE_LOG_FORMAT``
names: ``text`` (readable lines) or ``json`` (one JSON object a line).

A JSON line has ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
``exception`` (the traceback, when there is one), and, where known, ``workspace_id``,
``batch_id``, ``message_id`` and ``trigger_id``. Those ids come from context variables set
where the work is known: the ingest task binds its batch id (``sluice.worker.tasks``), the
deliverer an attempt's trigger, message id and workspace
(``sluice.delivery.deliverer``), the gateway a request's workspace once its write key
is known (``sluice.gateway.state``). A log call may also pass them in ``extra``, which wins.
Each asyncio task and each thread has its own context, so the ids of one request or
attempt never show on another's lines.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("workspace_id", "batch_id", "message_id", "trigger_id")
# uvicorn's own loggers: in JSON, through the root handler instead of uvicorn's text ones.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Alembic names each plugin it loads at INFO, seven lines a start: shown only at DEBUG.
QUIET_BELOW_DEBUG = ("alembic.runtime.plugins",)

_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"sluice_log_{name}", default=None) for name in CONTEXT_FIELDS
}


def bind(**fields: str | None) -> None:
    """Set log context fields for the rest of the current context: an asyncio task (a
    request, a delivery attempt) or a thread."""
    for name, value in fields.items():
        _context[name].set(value)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Set log context fields within the block, and restore the previous ones after it."""
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = [
        (_context[name], _context[name].set(value)) for name, value in fields.items()
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_context() -> dict[str, str]:
    """The log context fields set here and now."""
    return {name: value for name, var in _context.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Copies the context fields onto each record (a field passed in ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_context().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
        timestamp=True,
        # uvicorn repeats each message with terminal colours; Python 3.12 adds taskName.
        reserved_attrs=[*RESERVED_ATTRS, "color_message", "taskName"],
    )


def json_logging_config(level: str | int) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: JSON lines on stderr for every logger."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": json_formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
    }


# Line breaks and other control characters a message may carry from a request (a user id
# with a newline could forge a line of its own), written as escapes in text logs.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, 0x85) if chr(code) != "\t"} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def one_line(text: str) -> str:
    """``text`` with its line breaks and control characters escaped (tabs kept)."""
    return text.translate(_ESCAPES)


class OneLineRecord(logging.LogRecord):
    """A record whose message is one line, whoever logs it (uvicorn and Celery included);
    a traceback is formatted apart from the message and keeps its lines."""

    def getMessage(self) -> str:
        return one_line(super().getMessage())


def configure_logging(log_format: LogFormat, level: str | int = "INFO") -> None:
    """Set up the process's logging (each ``sluice`` command does, first thing). In text,
    each message is one line (``OneLineRecord``); JSON escapes line breaks itself."""
    if log_format == "json":
        logging.config.dictConfig(json_logging_config(level))
        logging.captureWarnings(True)  # warnings become JSON lines too
    else:
        logging.setLogRecordFactory(OneLineRecord)
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    quiet = logging.WARNING if _level_number(level) > logging.DEBUG else logging.NOTSET
    for name in QUIET_BELOW_DEBUG:
        logging.getLogger(name).setLevel(quiet)


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """What ``uvicorn.run(log_config=…)`` takes: uvicorn's own default for text; for JSON,
    the JSON set-up at the root's level, so that processes uvicorn starts itself
    (``--workers``) log JSON as well."""
    if log_format == "json":
        return json_logging_config(logging.getLogger().level or logging.INFO)
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def use_log_format_in_celery(log_format: LogFormat) -> None:
    """Celery sets up a worker's logging itself, after the command's: for JSON, give the
    handlers it makes (the root's, and the task logger's) the JSON formatter and the context.
    Its pool processes inherit them."""
    if log_format != "json":
        return
    from celery.signals import after_setup_logger, after_setup_task_logger

    after_setup_logger.connect(_json_handlers, weak=False, dispatch_uid="sluice.logs.root")
    after_setup_task_logger.connect(_json_handlers, weak=False, dispatch_uid="sluice.logs.task")


def _json_handlers(logger: logging.Logger, **_: Any) -> None:
    from celery.utils.log import get_multiprocessing_logger

    loggers = [logger]
    if logger is logging.getLogger():
        loggers.append(get_multiprocessing_logger())
    for each in filter(None, loggers):
        for handler in each.handlers:
            handler.setFormatter(json_formatter())
            handler.addFilter(ContextFilter())
