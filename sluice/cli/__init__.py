"""The ``sluice`` command: the CLI and the embedded dev stack, on top of every other layer.
Its root and groups are in ``sluice.cli.root``, one module per command group.

They need the server extra (``pip install 'eventsluice[server]'``); without it the command
says so instead of failing with an import traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from sluice.cli.root import main as command
    except ModuleNotFoundError as exc:
        sys.exit(
            f"sluice: the command needs the server extra ({exc.name} is missing): "
            "pip install 'eventsluice[server]'"
        )
    command()
