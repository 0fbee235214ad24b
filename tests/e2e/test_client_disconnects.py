"""A client that goes away before its body has arrived, against a real gateway process:
one info line each (no traceback), nothing queued, and a status of its own (499) in
``sluice_http_requests_total`` rather than a 500 (docs/metrics.md)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack

ROUTE = "/compat/platformly/"
LINE = "the client disconnected before its body was read"


def requests_counted(stack: Stack, status: str) -> float:
    text = httpx.get(f"{stack.gateway_url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sluice_http_requests_total"
        and sample.labels.get("route") == ROUTE
        and sample.labels.get("status") == status
    )


def half_a_request(host: str, port: int) -> None:
    """A head promising 1,000 bytes of form, 10 of them sent, then the connection closed."""
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(
            f"POST {ROUTE} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 1000\r\n\r\napi_key=ab".encode()
        )
        time.sleep(0.2)  # the gateway is reading the body by now


def test_a_disconnect_mid_body_is_an_info_line_and_a_499_not_a_500(stack: Stack) -> None:
    address = urlsplit(stack.gateway_url)
    assert address.hostname is not None and address.port is not None
    logged_before = stack.gateway.log_text()
    gone_before, failed_before = requests_counted(stack, "499"), requests_counted(stack, "500")
    queued_before = stack.redis.llen("sluice.ingest")
    for _ in range(3):
        half_a_request(address.hostname, address.port)
    deadline = time.monotonic() + 15
    while requests_counted(stack, "499") < gone_before + 3:  # counts reach Redis each second
        assert time.monotonic() < deadline, stack.gateway.log_text()[-3000:]
        time.sleep(0.3)
    assert requests_counted(stack, "500") == failed_before
    assert stack.redis.llen("sluice.ingest") == queued_before
    new = stack.gateway.log_text()[len(logged_before) :]
    assert new.count(LINE) == 3, new[-3000:]
    assert "Traceback" not in new and "ERROR" not in new, new[-3000:]
