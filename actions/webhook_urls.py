"""Which webhook URLs Sluice will call: http(s) only, and by default never an address that
is not globally reachable (loopback, private, link-local, reserved …, by the IANA
registries in ``sluice.actions.address_registry``), so a workspace cannot
make the workers probe the network they run in. Checked when an automation is added and
again before every attempt (DNS may have changed)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from ipaddress import ip_address
from urllib.parse import urlsplit

from sluice.actions.address_registry import entry_for, is_globally_reachable

Resolver = Callable[[str, int], list[str]]


class UnsafeWebhookUrlError(ValueError):
    """The URL is not one Sluice calls; the message says why."""


class UnresolvableHostError(UnsafeWebhookUrlError):
    """The host does not resolve (now): refused when adding, retried when delivering."""


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (raises ``OSError`` when it does not)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_webhook_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> None:
    """Raise ``UnsafeWebhookUrlError`` unless Sluice may deliver to ``url``."""
    parts = urlsplit(url)
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise UnsafeWebhookUrlError(f"{url!r}: a webhook URL cannot contain spaces or controls")
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhookUrlError(f"{url!r}: a webhook URL must be http or https")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeWebhookUrlError(f"{url!r}: {exc}") from exc
    if not parts.hostname:
        raise UnsafeWebhookUrlError(f"{url!r}: a webhook URL needs a host")
    if parts.username or parts.password:
        raise UnsafeWebhookUrlError(f"{url!r}: credentials in a webhook URL are not allowed")
    if allow_private:
        return
    try:
        addresses = resolver(parts.hostname, port)
    except OSError as exc:
        raise UnresolvableHostError(f"{parts.hostname}: cannot be resolved ({exc})") from exc
    refuse_non_global(parts.hostname, addresses)


def refuse_non_global(hostname: str, addresses: Iterable[str]) -> None:
    """Raise ``UnsafeWebhookUrlError`` if one of the addresses ``hostname`` resolved to is
    not globally reachable by the IANA registries (``sluice.actions.address_registry``), or
    leads to an IPv4 address that is not."""
    for text in addresses:
        address = ip_address(text.split("%", 1)[0])
        if not is_globally_reachable(address):
            raise UnsafeWebhookUrlError(
                f"{hostname} resolves to {address} ({entry_for(address).name}), a loopback, "
                "private or reserved address; set SLUICE_ALLOW_PRIVATE_WEBHOOKS=true to allow it"
            )
