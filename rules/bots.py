"""Bot detection: the maintained crawler list, an explicit client flag, optional networks.

The user agent is the *end user's* (``context.user_agent``, from the client SDK), not the
HTTP client that delivered the event: server-side SDKs send none and are never bots here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

import crawleruseragents


@lru_cache(maxsize=20_000)
def is_crawler_user_agent(user_agent: str) -> bool:
    """On the crawler-user-agents list (~100 µs a lookup, hence the cache: real traffic
    repeats a small set of user agents)."""
    return bool(crawleruseragents.is_crawler(user_agent))


class BotDetector:
    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks: list[IPv4Network | IPv6Network] = [
            ip_network(cidr, strict=False) for cidr in networks
        ]

    def reason(self, context: Mapping[str, Any]) -> str | None:
        """Why the event comes from a bot, or None."""
        if context.get("bot") is True:
            return "flagged as a bot by the client"
        user_agent = context.get("user_agent")
        if isinstance(user_agent, str) and user_agent and is_crawler_user_agent(user_agent):
            return f"user agent on the crawler list: {user_agent[:120]}"
        ip = context.get("ip")
        if self._networks and isinstance(ip, str):
            try:
                address = ip_address(ip)
            except ValueError:
                return None
            for network in self._networks:
                if address in network:
                    return f"ip {ip} in bot network {network}"
        return None
