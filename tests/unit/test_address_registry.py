"""The webhook address guard (sluice.actions.address_registry, webhook_urls): addresses
judged by the IANA special-purpose registries, IPv6 forms judged by the IPv4 address they
lead to, when an automation is added and before each attempt."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from sluice.actions.address_registry import (
    IPV4_ENTRIES,
    IPV6_ENTRIES,
    Entry,
    Reach,
    entry_for,
)
from sluice.actions.webhook import _refusal
from sluice.actions.webhook_urls import UnsafeWebhookUrlError, check_webhook_url

# One address in each registry entry that is not globally reachable, and in each form that
# carries an IPv4 address, leading to one that is not.
REFUSED = [
    "192.0.0.8",  # IPv4 dummy address (Python 3.11's is_global says global)
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "::ffff:0:a9fe:a9fe",  # IPv4-translated 169.254.169.254
    "0.1.2.3",
    "0.0.0.0",
    "10.0.0.1",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.169.254",
    "172.31.255.255",
    "192.0.0.1",
    "192.0.0.100",
    "192.0.0.170",
    "192.0.0.171",
    "192.0.0.255",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "239.255.255.255",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::10.0.0.1",  # IPv4-compatible
    "::0.0.0.2",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",
    "64:ff9b:1::808:808",  # local-use translation: refused whatever it carries
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "2001:0:a00:1:8000:63bf:3fff:fdd2",  # Teredo, server 10.0.0.1
    "100::1",
    "100:0:0:1::1",
    "2001:2::1",
    "2001:10::1",
    "2001:db8::1",
    "2001:1ff::1",  # IETF protocol assignments outside its global entries
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd00::1",
    "fe80::1",
    "ff02::1",  # multicast: outside global unicast
    "4000::1",  # reserved by the IETF: outside 2000::/3
    "1::1",
]

ACCEPTED = [
    "93.184.216.34",
    "8.8.8.8",
    "192.0.0.9",  # PCP anycast: globally reachable inside 192.0.0.0/24
    "192.0.0.10",
    "192.31.196.1",
    "192.52.193.1",
    "192.175.48.1",
    "2606:4700::1111",
    "2001:1::1",
    "2001:1::2",
    "2001:1::3",
    "2001:3::1",
    "2001:4:112::1",
    "2001:20::1",
    "2001:30::1",
    "2620:4f:8000::1",
    "::ffff:8.8.8.8",
    "::ffff:0:808:808",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "2001:0:5db8:808:8000:63bf:f7f7:f7f7",  # Teredo, server 93.184.8.8, client 8.8.8.8
]


def resolver_to(address: str):  # type: ignore[no-untyped-def]
    return lambda host, port: [address]


@pytest.mark.parametrize("address", REFUSED)
def test_an_address_that_is_not_globally_reachable_is_refused(address: str) -> None:
    with pytest.raises(UnsafeWebhookUrlError, match="SLUICE_ALLOW_PRIVATE_WEBHOOKS"):
        check_webhook_url(
            "https://hooks.example/x", allow_private=False, resolver=resolver_to(address)
        )
    literal = f"http://[{address}]/x" if ":" in address else f"http://{address}/x"
    assert _refusal(literal, False) is not None  # before an attempt, the host an address
    assert _refusal(literal, True) is None
    check_webhook_url("https://hooks.example/x", allow_private=True, resolver=resolver_to(address))


@pytest.mark.parametrize("address", ACCEPTED)
def test_a_globally_reachable_address_is_accepted(address: str) -> None:
    check_webhook_url("https://hooks.example/x", allow_private=False, resolver=resolver_to(address))
    literal = f"http://[{address}]/x" if ":" in address else f"http://{address}/x"
    assert _refusal(literal, False) is None


NOT_GLOBAL = [e for e in (*IPV4_ENTRIES, *IPV6_ENTRIES) if e.reach is Reach.NOT_GLOBAL]
GLOBAL = [e for e in (*IPV4_ENTRIES, *IPV6_ENTRIES) if e.reach is Reach.GLOBAL]


@pytest.mark.parametrize("entry", NOT_GLOBAL, ids=lambda entry: str(entry.network))
def test_every_entry_not_globally_reachable_refuses_its_first_and_last_address(
    entry: Entry,
) -> None:
    for address in (entry.network[0], entry.network[-1]):
        if entry_for(address) is not entry:
            continue  # a more specific entry decides (e.g. 192.0.0.9 in 192.0.0.0/24)
        with pytest.raises(UnsafeWebhookUrlError):
            check_webhook_url(
                "https://hooks.example/x", allow_private=False, resolver=resolver_to(str(address))
            )


@pytest.mark.parametrize("entry", GLOBAL, ids=lambda entry: str(entry.network))
def test_every_globally_reachable_entry_accepts_its_first_and_last_address(entry: Entry) -> None:
    for address in (entry.network[0], entry.network[-1]):
        if entry_for(address) is entry:
            check_webhook_url(
                "https://hooks.example/x", allow_private=False, resolver=resolver_to(str(address))
            )


def test_the_refusal_names_the_registry_entry() -> None:
    with pytest.raises(UnsafeWebhookUrlError, match="IPv4 dummy address"):
        check_webhook_url(
            "https://hooks.example/x", allow_private=False, resolver=resolver_to("192.0.0.8")
        )
    assert entry_for(ip_address("::ffff:0:7f00:1")).name == "IPv4-translated Address"
