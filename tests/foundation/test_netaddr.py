"""client_ip: the one parser behind the shim's allow-list and the console's local check."""

from __future__ import annotations

import ipaddress

from dicomgate.netaddr import client_ip


def test_client_ip_unwraps_mapped_ipv4_and_drops_the_zone():
    assert client_ip("::ffff:127.0.0.1") == ipaddress.IPv4Address("127.0.0.1")
    assert client_ip("::ffff:10.0.0.5") in ipaddress.ip_network("10.0.0.0/24")
    assert client_ip("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    assert client_ip("192.168.1.7") == ipaddress.IPv4Address("192.168.1.7")
    assert client_ip("::1").is_loopback


def test_client_ip_refuses_what_is_not_an_address():
    for text in ("", "localhost", "10.0.0.256", "%eth0", "127.0.0.1:8080"):
        assert client_ip(text) is None, text
