"""The database as the CLI's commands use it: reachable and at this release's schema, or one
line saying what to do (``run `sluice migrate```) instead of a traceback from the first query.
``sluice migrate`` and ``sluice dev`` migrate, so they do not check."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from sluice.ops.health import schema_heads, schema_problem, short_reason
from sluice.settings import mask_url
from sluice.store.engine import make_engine

MIGRATE = "run `sluice migrate`"


def checked_engine(url: str) -> Engine:
    """An engine for ``url`` whose schema is at this release's newest revision; otherwise a
    ``click.ClickException`` naming the database (password masked) and the remedy."""
    shown = mask_url(url)
    parsed = make_url(url)
    database = parsed.database or ""
    on_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if on_file and not Path(database).exists():  # connecting would create an empty file
        raise click.ClickException(f"no database at {shown}: {MIGRATE}")
    engine = make_engine(url)
    try:
        with _quiet("alembic"):  # its set-up lines at INFO say nothing to a command's user
            problem = schema_problem(engine, schema_heads())
    except DBAPIError as exc:
        engine.dispose()
        reason = short_reason(exc.orig if exc.orig is not None else exc)
        raise click.ClickException(f"cannot use the database {shown}: {reason}") from None
    if problem is not None:
        engine.dispose()
        remedy = "" if MIGRATE in problem else f": {MIGRATE}"
        raise click.ClickException(f"the database {shown} is {problem}{remedy}")
    return engine


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
