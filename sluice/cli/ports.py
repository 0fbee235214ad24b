"""The port a server is about to listen on, checked before anything starts: a port that is
taken ends ``sluice gateway`` and ``sluice dev`` with one line naming the address and the
option or setting that chooses another, rather than uvicorn's bind error after the app
(and, for ``sluice dev``, Redis and the worker) has started."""

from __future__ import annotations

import socket

import click


def address_is_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now (as uvicorn binds: SO_REUSEADDR, so a
    closed connection in TIME_WAIT does not count)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # the server's own bind reports an address that does not resolve
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def require_free(host: str, port: int, how_to_change: str) -> None:
    """Exit with status 1 and one line when ``host:port`` is taken."""
    if not address_is_free(host, port):
        raise click.ClickException(
            f"{host}:{port} is already in use (another server listens there); "
            f"choose another port with {how_to_change}"
        )
