"""Which IP addresses a server-side fetch may connect to: public unicast only.

`ipaddress`'s properties alone are not enough: their answers move between Python versions
(192.0.0.0/24 has "global" exceptions since 3.11, 100.64.0.0/10 is neither private nor
global, multicast counts as global) and they do not look inside the IPv6 forms that carry
an IPv4 address (NAT64, 6to4). So an explicit table comes first, with a reason for the
caller, and the properties are only the last net for whatever the table misses.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address


def _table(rows: list[tuple[str, str]]) -> tuple[tuple[IPv4Network | IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(network), why) for network, why in rows)


# Most specific first: the first match names the reason.
_V4_BLOCKED = _table(
    [
        ("169.254.169.254/32", "cloud metadata service"),
        ("100.100.100.200/32", "cloud metadata service"),
        ("0.0.0.0/8", "'this network' / unspecified"),
        ("10.0.0.0/8", "private network"),
        ("100.64.0.0/10", "shared carrier-grade NAT network"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private network"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation network"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private network"),
        ("198.18.0.0/15", "benchmarking network"),
        ("198.51.100.0/24", "documentation network"),
        ("203.0.113.0/24", "documentation network"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved / broadcast"),
    ]
)
_V6_BLOCKED = _table(
    [
        ("fd00:ec2::254/128", "cloud metadata service"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo tunnel"),  # the embedded client address is obfuscated: refuse all
        ("2001:db8::/32", "documentation network"),
        ("fc00::/7", "unique local network"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ]
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def unwrap(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is that IPv4 address on the wire."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal(address: IPAddress) -> str | None:
    """Why a fetch may not connect to `address` (a short phrase), or None when it may."""
    address = unwrap(address)
    if isinstance(address, IPv6Address):
        address = ipaddress.ip_address(address.compressed)  # drops any %scope
        assert isinstance(address, IPv6Address)
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded)
            return f"it carries {embedded}: {inner}" if inner else None
        table = _V6_BLOCKED
    else:
        table = _V4_BLOCKED
    for network, why in table:
        if address in network:
            return why
    if address.is_multicast or address.is_unspecified or address.is_loopback or address.is_link_local:
        return "not a public address"
    if address.is_reserved or address.is_private or not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address that NAT64 (64:ff9b::/96) or 6to4 (2002::/16) routes to."""
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
