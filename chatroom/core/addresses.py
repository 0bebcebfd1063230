# -*- test-case-name: tests.test_handshakes -*-
"""Peer addresses: which are this machine, and under which key one is counted.

One place for the rules every per-address limit shares (the host's
connection limits, the handshake limits, discovery on loopback): a
loopback peer is this machine; an IPv4-mapped IPv6 address is its IPv4
address; other IPv6 addresses count per /64, since one host usually holds
a whole /64 and could otherwise use a fresh address per connection.
"""

from __future__ import annotations

import ipaddress


def unmapped(address: str) -> str:
    """C{address}, or the IPv4 address it maps (C{::ffff:a.b.c.d})."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return address


def is_loopback(address: str) -> bool:
    """Whether C{address} is a loopback IP address (C{127.0.0.0/8}, C{::1},
    or IPv4 loopback mapped into IPv6); C{False} for anything else,
    including strings that are no IP address."""
    try:
        return ipaddress.ip_address(unmapped(address)).is_loopback
    except ValueError:
        return False


def address_key(address: str) -> str | None:
    """The per-address counting key of C{address}; C{None} when exempt.

    Loopback and non-IP peers (UNIX sockets, test transports) are exempt;
    IPv4-mapped IPv6 addresses count as their IPv4 address; other IPv6
    addresses count per /64.
    """
    try:
        ip = ipaddress.ip_address(unmapped(address))
    except ValueError:
        return None
    if ip.is_loopback:
        return None
    if ip.version == 6:
        return str(ipaddress.ip_network((ip, 64), strict=False))
    return str(ip)
