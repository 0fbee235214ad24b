"""The request head's limits and the body's time limit, against a real ``sluice gateway``
process (``sluice.gateway.server``: they live in the HTTP server, which an app in process
does not have): raw sockets, so that a head can be huge, unfinished or slow."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis
from sqlalchemy import Engine

from sluice.cli.embedded_redis import free_port
from sluice.store.definitions import add_definition
from sluice.store.workspaces import create_workspace
from tests.conftest import ISOLATED_DB_OFFSET, sluice_env
from tests.processes import GATEWAY_COMMAND, SluiceProcess, with_option
from tests.services import redis_db_of, with_redis_db

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_HEADER_BYTES = 16_384  # the default
# Longer than either timeout with room for a busy machine, far shorter than "forever".
ANSWER_WITHIN_S = 8.0


@dataclass(frozen=True)
class Gateway:
    port: int
    write_key: str
    bunce_event_id: str

    def connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_WITHIN_S)
        conn.settimeout(ANSWER_WITHIN_S)
        return conn


@pytest.fixture(scope="module")
def gateway(
    redis_url: str, database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    isolated = with_redis_db(redis_url, redis_db_of(redis_url) + ISOLATED_DB_OFFSET)
    redis.Redis.from_url(isolated).flushdb()
    workspace = create_workspace(engine, "server-limits")
    bunce = add_definition(engine, workspace.workspace_id, "bunce", "Purchase")
    port = free_port()
    command = with_option(with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port))
    env = sluice_env(
        isolated,
        database_url,
        SLUICE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        SLUICE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    )
    log = tmp_path_factory.mktemp("server-limits") / "gateway.log"
    process = SluiceProcess(command, env, Path(log)).start()
    try:
        process.wait_for_http(f"http://127.0.0.1:{port}/livez")
        yield Gateway(port, workspace.write_key, bunce.definition_id)
    finally:
        process.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after it

    def json(self) -> object:
        return orjson.loads(self.body)


def read_answer(conn: socket.socket) -> Answer:
    """One HTTP/1.1 response (with a Content-Length), and whether the connection then closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise AssertionError(f"closed without an answer (got {data!r})")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    try:
        conn.settimeout(2.0)
        closed = conn.recv(1) == b""
    except TimeoutError:
        closed = False
    finally:
        conn.settimeout(ANSWER_WITHIN_S)
    return Answer(int(status_line.split()[1]), headers, rest[:length], closed)


def basic(key: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def request_head(path: str, *headers: str, length: int = 0) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: sluice", "Content-Type: application/json"]
    lines += [*headers, f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


TRACK = b'{"userId": "u", "event": "E"}'


def test_a_head_over_the_limit_is_431_and_one_under_it_is_served(gateway: Gateway) -> None:
    for pad, expected in ((MAX_HEADER_BYTES - 1024, 200), (MAX_HEADER_BYTES + 1, 431)):
        with gateway.connect() as conn:
            head = request_head(
                "/v1/track",
                f"Authorization: {basic(gateway.write_key)}",
                f"X-Pad: {'p' * pad}",
                length=len(TRACK),
            )
            conn.sendall(head + TRACK)
            answer = read_answer(conn)
        assert answer.status == expected, answer.body
    assert answer.json() == {
        "success": False,
        "error": "headers_too_large",
        "message": f"the request head is larger than {MAX_HEADER_BYTES} bytes",
    }
    assert answer.closed


def test_a_huge_head_is_refused_before_it_ends(gateway: Gateway) -> None:
    with gateway.connect() as conn:
        conn.sendall(b"POST /compat/bunce/v1/events/trigger HTTP/1.1\r\nX-Authorization: ")
        sent = 0
        # One header value of up to 8 MB, the head never ended, until the gateway answers.
        while sent < 8 * 1024 * 1024 and not select.select([conn], [], [], 0.05)[0]:
            conn.sendall(b"k" * 4096)
            sent += 4096
        answer = read_answer(conn)
    assert (answer.status, answer.closed) == (431, True)
    assert answer.json()["error"] == "headers_too_large"  # type: ignore[index]
    assert sent < 2 * MAX_HEADER_BYTES + 65536  # refused as it went over, not at its end


def test_a_head_that_does_not_arrive_in_time_is_408_and_closed(gateway: Gateway) -> None:
    for first_bytes in (b"", b"POST /v1/track HTTP/1.1\r\nHost: sluice\r\n"):
        with gateway.connect() as conn:
            conn.sendall(first_bytes)
            started = time.monotonic()
            answer = read_answer(conn)
            waited = time.monotonic() - started
        assert (answer.status, answer.closed) == (408, True), first_bytes
        assert answer.json() == {
            "success": False,
            "error": "request_timeout",
            "message": "the request head did not arrive in time",
        }
        assert HEADER_TIMEOUT_S * 0.9 <= waited < ANSWER_WITHIN_S


def test_a_kept_alive_connection_may_idle_between_requests_but_not_within_a_head(
    gateway: Gateway,
) -> None:
    auth = f"Authorization: {basic(gateway.write_key)}"
    with gateway.connect() as conn:
        for _ in range(2):
            conn.sendall(request_head("/v1/track", auth, length=len(TRACK)) + TRACK)
            answer = read_answer(conn)
            assert (answer.status, answer.closed) == (200, False), answer.body
            time.sleep(HEADER_TIMEOUT_S * 1.5)  # idle: uvicorn's keep-alive timeout governs
        conn.sendall(b"POST /v1/track HTTP/1.1\r\n")  # a head begun, never finished
        answer = read_answer(conn)
    assert (answer.status, answer.closed) == (408, True)


def test_a_body_that_does_not_arrive_in_time_is_408_in_the_routes_shape(gateway: Gateway) -> None:
    native = request_head("/v1/track", f"Authorization: {basic(gateway.write_key)}", length=100)
    bunce = request_head(
        "/compat/bunce/v1/events/trigger", f"X-Authorization: {gateway.write_key}", length=100
    )
    answers = []
    for head in (native, bunce):
        with gateway.connect() as conn:
            conn.sendall(head + b'{"userId": ')  # 11 of the 100 bytes announced
            started = time.monotonic()
            answers.append(read_answer(conn))
            assert BODY_TIMEOUT_S * 0.9 <= time.monotonic() - started < ANSWER_WITHIN_S
    message = f"the request body did not arrive within {BODY_TIMEOUT_S:g} s"
    assert [(a.status, a.closed) for a in answers] == [(408, True), (408, True)]
    assert answers[0].json() == {"success": False, "error": "request_timeout", "message": message}
    assert answers[1].json() == {
        "success": False,
        "message": message,
        "error": {"code": 408, "message": message},
    }
