"""Minimal network-device control by ioctl, for the container's init.

Bringing up ``lo`` in a new network namespace is all the runtime does to
networks; the engine's networking (veths, bridges) goes through netlink.
"""

from __future__ import annotations

import _socket
import fcntl
import struct

__all__ = ["link_up"]

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def link_up(name: str = "lo") -> None:
    # _socket, not socket: the init imports this, and socket's wrapper costs ~4 ms.
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH", name.encode(), 0)
        _, flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags | _IFF_UP))
    finally:
        sock.close()
