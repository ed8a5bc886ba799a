"""This machine's addresses on its networks: what phones in the classroom type (or scan) to reach the dashboard.
Read from the kernel's interface list (no packet is sent to find them)."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

_SIOCGIFADDR = 0x8915


def lan_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces, loopback left out, private networks (a school's Wi-Fi) first."""
    found: list[str] = []
    for _, name in socket.if_nameindex():
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        except OSError:  # no IPv4 address on this interface
            continue
        address = socket.inet_ntoa(packed[20:24])
        if not ipaddress.ip_address(address).is_loopback and address not in found:
            found.append(address)
    return sorted(found, key=lambda a: not ipaddress.ip_address(a).is_private)
