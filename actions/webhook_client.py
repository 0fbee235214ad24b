"""The HTTP client webhooks go out with: one ``aiohttp`` session per deliverer, keep-alive
connections pooled per origin, many requests in flight on one event loop.

Unless private addresses are allowed, its resolver refuses a host that resolves to an
address that is not globally routable, at connection time: the addresses checked are the
ones connected to, so a DNS answer that changes between a check and the connection
(rebinding) cannot lead a webhook into the network the workers run in. A URL whose host is
an IP address never reaches a resolver; ``sluice.actions.webhook`` checks those
before every attempt.
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from sluice.actions.webhook_urls import refuse_non_global

USER_AGENT = "Sluice-Webhooks/1"
DNS_CACHE_S = 10  # how long an answer (checked) is reused


class GlobalOnlyResolver(ThreadedResolver):
    """Resolves with the system resolver; raises ``UnsafeWebhookUrlError`` when one of the
    addresses is loopback, private or reserved."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        refuse_non_global(host, [result["host"] for result in found])
        return found


def open_session(
    *, timeout_s: float, max_connections: int, allow_private: bool
) -> aiohttp.ClientSession:
    """A session for webhook deliveries (call from inside the event loop that uses it).
    ``timeout_s`` bounds a whole attempt: connecting, sending and waiting for the answer.
    Proxies from the environment are ignored, as are cookies."""
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        ttl_dns_cache=DNS_CACHE_S,
        resolver=None if allow_private else GlobalOnlyResolver(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers={"user-agent": USER_AGENT},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
    )
