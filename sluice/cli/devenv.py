"""The dev stack's settings file, ``<data dir>/dev.env``: how commands run beside
``sluice dev`` find its database and Redis without anything exported.

``sluice dev`` writes the settings its processes run with (``SLUICE_DATABASE_URL``,
``SLUICE_REDIS_URL``, ``SLUICE_BROKER_URL``, ``SLUICE_ALLOW_PRIVATE_WEBHOOKS``, the
deliverer's ``SLUICE_DELIVERER_HEARTBEAT_PATH`` and the gateway's ``SLUICE_GATEWAY_HOST``
and ``SLUICE_GATEWAY_PORT``, for ``sluice check``) each time it starts, and leaves the file
when it stops: the SQLite database stays usable, and the next start takes the same Redis
port again when it is free. Every other ``sluice`` command, when the environment names none
of the URLs, reads the file from ``.sluice/`` (or ``--dev-dir``, ``SLUICE_DEV_DIR``) into
its environment; a variable that is set always wins. The lines are
``KEY=VALUE`` with shell quoting, so ``set -a; . .sluice/dev.env`` works in a shell too.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, MutableMapping
from pathlib import Path

FILE_NAME = "dev.env"
DEFAULT_DIR = Path(".sluice")
DIR_VARIABLE = "SLUICE_DEV_DIR"
# Set any of these, and the environment describes a stack of its own: the file is not read.
URL_VARIABLES = ("SLUICE_DATABASE_URL", "SLUICE_REDIS_URL", "SLUICE_BROKER_URL")
HEADER = (
    "# Written by `sluice dev` each time it starts: the settings of its processes.\n"
    "# `sluice` commands run beside it read this file when no SLUICE_*_URL variable is set.\n"
)


def write(data_dir: Path, values: Mapping[str, str]) -> Path:
    """Replace the file in ``data_dir`` at once (a reader never sees half of it)."""
    path = data_dir / FILE_NAME
    partial = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    body = "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    partial.write_text(HEADER + body)
    partial.chmod(0o600)
    partial.replace(path)
    return path


def read(path: Path) -> dict[str, str]:
    """The file's ``KEY=VALUE`` lines; comments and blank lines skipped."""
    values = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, found, raw = line.partition("=")
        if found and key.strip():
            words = shlex.split(raw)
            values[key.strip()] = words[0] if words else ""
    return values


def apply(environ: MutableMapping[str, str], data_dir: Path) -> Path | None:
    """Fill ``environ`` from ``data_dir``'s file, without overriding what is set; the file
    read, or None (a URL variable set, or no file)."""
    if any(environ.get(name) for name in URL_VARIABLES):
        return None
    path = data_dir / FILE_NAME
    if not path.is_file():
        return None
    for key, value in read(path).items():
        environ.setdefault(key, value)
    return path
