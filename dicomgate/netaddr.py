"""Client addresses as the HTTP servers see them, parsed one way for every allow/loopback check."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_ip(text: str) -> IPAddress | None:
    """The caller's address, or None when `text` is not one.

    A `%zone` suffix (fe80::1%eth0) is dropped, and an IPv4-mapped IPv6 address
    (::ffff:10.0.0.5, what a dual-stack socket reports for an IPv4 caller) becomes the IPv4
    address, so IPv4 allow-lists and loopback checks hold on a dual-stack listener."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr
