"""A real HTTP server on loopback that receives webhooks: each path answers from a script
(status, delay, headers; the last reply repeats) and every request is recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived
    answered_at: float | None = None


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.received: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()

    def script(self, path: str, replies: Sequence[Reply]) -> str:
        """Answer ``path`` with these replies in turn (the last one repeats); its URL."""
        with self._lock:
            self._scripts[path] = list(replies)
        return self.url + path

    def next_reply(self, path: str) -> Reply:
        with self._lock:
            replies = self._scripts.get(path, [Reply()])
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while len(found := self.requests_to(path)) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{path}: {len(found)} of {count} webhooks within {timeout_s}s")
            time.sleep(0.05)
        return found


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            item = Received(self.path, dict(self.headers.items()), body, time.monotonic())
            receiver.record(item)
            reply = receiver.next_reply(self.path)
            time.sleep(reply.delay_s)
            # Before the answer leaves: the client may send its next request before this
            # thread runs again, and that request must not count as overlapping this one.
            item.answered_at = time.monotonic()
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    receiver = Receiver(server)
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
