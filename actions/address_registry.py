"""Which IP addresses are globally reachable, from the IANA special-purpose address
registries (IPv4 and IPv6) as tables, rather than ``ipaddress``'s ``is_global`` (whose
lists lag behind the registries, and differ between Python versions).

An address is judged by the most specific entry that holds it, as the registries intend
(192.0.0.9/32 is globally reachable inside 192.0.0.0/24, which is not). Beside the
special-purpose entries, two rows say what the registries leave implicit: IPv4 multicast
(224.0.0.0/4, from the multicast registry) is not unicast, and in IPv6 only 2000::/3 is
allocated global unicast (the IPv6 address space registry), so anything outside it that no
entry names is refused.

Some IPv6 forms carry an IPv4 address and lead to it (IPv4-mapped, -translated,
-compatible, 6to4, Teredo, NAT64 64:ff9b::/96): their entries say ``CARRIES_IPV4`` and
``ipv4_inside`` gives the addresses to judge in their place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network


class Reach(Enum):
    GLOBAL = "globally reachable"
    NOT_GLOBAL = "not globally reachable"
    CARRIES_IPV4 = "judged by the IPv4 address it carries"


@dataclass(frozen=True)
class Entry:
    network: IPv4Network | IPv6Network
    name: str
    reach: Reach


def _table(rows: list[tuple[str, str, Reach]]) -> tuple[Entry, ...]:
    return tuple(Entry(ip_network(prefix), name, reach) for prefix, name, reach in rows)


G, N, C = Reach.GLOBAL, Reach.NOT_GLOBAL, Reach.CARRIES_IPV4

IPV4_ENTRIES = _table(
    [
        ("0.0.0.0/0", "IPv4 unicast", G),
        ("0.0.0.0/8", '"This network"', N),
        ("0.0.0.0/32", '"This host on this network"', N),
        ("10.0.0.0/8", "Private-Use", N),
        ("100.64.0.0/10", "Shared Address Space", N),
        ("127.0.0.0/8", "Loopback", N),
        ("169.254.0.0/16", "Link Local", N),
        ("172.16.0.0/12", "Private-Use", N),
        ("192.0.0.0/24", "IETF Protocol Assignments", N),
        ("192.0.0.0/29", "IPv4 Service Continuity Prefix", N),
        ("192.0.0.8/32", "IPv4 dummy address", N),
        ("192.0.0.9/32", "Port Control Protocol Anycast", G),
        ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", G),
        ("192.0.0.170/32", "NAT64/DNS64 Discovery", N),
        ("192.0.0.171/32", "NAT64/DNS64 Discovery", N),
        ("192.0.2.0/24", "Documentation (TEST-NET-1)", N),
        ("192.31.196.0/24", "AS112-v4", G),
        ("192.52.193.0/24", "AMT", G),
        ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", N),
        ("192.168.0.0/16", "Private-Use", N),
        ("192.175.48.0/24", "Direct Delegation AS112 Service", G),
        ("198.18.0.0/15", "Benchmarking", N),
        ("198.51.100.0/24", "Documentation (TEST-NET-2)", N),
        ("203.0.113.0/24", "Documentation (TEST-NET-3)", N),
        ("224.0.0.0/4", "Multicast", N),
        ("240.0.0.0/4", "Reserved", N),
        ("255.255.255.255/32", "Limited Broadcast", N),
    ]
)

IPV6_ENTRIES = _table(
    [
        ("::/0", "outside global unicast", N),
        ("2000::/3", "Global Unicast", G),
        ("::/96", "IPv4-compatible (deprecated)", C),
        ("::/128", "Unspecified Address", N),
        ("::1/128", "Loopback Address", N),
        ("::ffff:0:0/96", "IPv4-mapped Address", C),
        ("::ffff:0:0:0/96", "IPv4-translated Address", C),
        ("64:ff9b::/96", "IPv4-IPv6 Translat.", C),
        ("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", N),
        ("100::/64", "Discard-Only Address Block", N),
        ("100:0:0:1::/64", "Dummy IPv6 Prefix", N),
        ("2001::/23", "IETF Protocol Assignments", N),
        ("2001::/32", "TEREDO", C),
        ("2001:1::1/128", "Port Control Protocol Anycast", G),
        ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", G),
        ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", G),
        ("2001:2::/48", "Benchmarking", N),
        ("2001:3::/32", "AMT", G),
        ("2001:4:112::/48", "AS112-v6", G),
        ("2001:10::/28", "Deprecated (previously ORCHID)", N),
        ("2001:20::/28", "ORCHIDv2", G),
        ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", G),
        ("2001:db8::/32", "Documentation", N),
        ("2002::/16", "6to4", C),
        ("2620:4f:8000::/48", "Direct Delegation AS112 Service", G),
        ("3fff::/20", "Documentation", N),
        ("5f00::/16", "Segment Routing (SRv6) SIDs", N),
        ("fc00::/7", "Unique-Local", N),
        ("fe80::/10", "Link-Local Unicast", N),
    ]
)


def entry_for(address: IPv4Address | IPv6Address) -> Entry:
    """The most specific registry entry holding ``address``."""
    table: tuple[Entry, ...] = IPV4_ENTRIES if isinstance(address, IPv4Address) else IPV6_ENTRIES
    return max((e for e in table if address in e.network), key=lambda e: e.network.prefixlen)


def ipv4_inside(address: IPv6Address) -> list[IPv4Address]:
    """The IPv4 addresses an IPv6 address of a ``CARRIES_IPV4`` entry leads to: the last 32
    bits (mapped, translated, compatible, NAT64), the 6to4 router, Teredo's server and
    client."""
    if address.teredo is not None:
        return list(address.teredo)
    if address.sixtofour is not None:
        return [address.sixtofour]
    return [IPv4Address(int(address) & 0xFFFFFFFF)]


def is_globally_reachable(address: IPv4Address | IPv6Address) -> bool:
    """True if the registries say ``address`` is globally reachable (for a form carrying an
    IPv4 address, if every IPv4 address it leads to is)."""
    reach = entry_for(address).reach
    if reach is Reach.CARRIES_IPV4 and isinstance(address, IPv6Address):
        return all(is_globally_reachable(inner) for inner in ipv4_inside(address))
    return reach is Reach.GLOBAL
