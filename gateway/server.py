"""The gateway's HTTP server: uvicorn's httptools protocol with limits on the request head.

A request head (request line and headers) larger than ``SLUICE_MAX_HEADER_BYTES`` gets 431,
and one that has not fully arrived ``SLUICE_HEADER_TIMEOUT_S`` after the connection opened
(or, on a kept-alive connection, after its first bytes came) gets 408; either way the
connection is closed. An idle kept-alive connection is closed by uvicorn's keep-alive
timeout, as before. uvicorn alone takes heads of any size and waits for them forever.
Bodies are timed by the routes (``sluice.gateway.body``), which answer in their own shape.

``server_options`` gives what ``uvicorn.run`` or ``uvicorn.Config`` needs for it: ``sluice
gateway`` and ``sluice dev`` both use it."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from sluice.settings import Settings


class LimitedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that refuses heads over ``max_header_bytes`` (431) and heads
    slower than ``header_timeout_s`` (408)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_header_bytes: int,
        header_timeout_s: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self._in_head = True  # the parser is reading a request head (or waits for one)
        self._head_bytes = 0  # bytes received for it so far (raw, at most one chunk more)
        self._header_bytes = 0  # its request line and headers as parsed (exact)
        self._head_timer: asyncio.TimerHandle | None = None

    # The head's clock: from the connection, or the head's first bytes, to its end.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def _start_head_clock(self) -> None:
        self._stop_head_clock()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "request_timeout", "the request head did not arrive in time")

    # The head's size: counted as it arrives, so that a huge one is refused early.

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, with the size checks: a parser callback's error reaches here as an
        # HttpParserCallbackError (its __context__ the error), which uvicorn answers 400.
        counting = self._in_head
        if counting:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._start_head_clock()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._head_too_large()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and not counting:
            # A head began within this chunk, after the previous request's body: its share
            # of the chunk is not known, so count from the next chunk (one chunk leeway).
            self._head_bytes = 0
        elif self._in_head and self._head_bytes > self.max_header_bytes:
            self._head_too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_clock()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's, whenever it comes
        self._head_bytes = 0

    def _count(self, size: int) -> None:
        """The exact size of a head whose parts arrived whole in one chunk."""
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise _HeadTooLarge

    def _head_too_large(self) -> None:
        self._refuse(
            431,
            "headers_too_large",
            f"the request head is larger than {self.max_header_bytes} bytes",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer in the native API's error shape (``sluice.gateway.errors``), then close;
        only close while an earlier response on the connection is under way."""
        self._stop_head_clock()
        self._in_head = False
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        body = orjson.dumps({"success": False, "error": code, "message": message})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class _HeadTooLarge(Exception):
    """Raised from a parser callback: stops the parser in the middle of the head (not an
    ``HttpParserError``, which uvicorn would answer with a 400 itself)."""


def server_options(settings: Settings) -> dict[str, Any]:
    """The gateway's options for ``uvicorn.run`` or ``uvicorn.Config``: its protocol, with
    the settings' limits (a ``functools.partial``, which pickles for ``--workers N``)."""
    return {
        "http": functools.partial(
            LimitedHttpProtocol,
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
        ),
    }
