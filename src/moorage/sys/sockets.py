"""What the kernel knows about a socket's queues and a caller cannot see otherwise."""

from __future__ import annotations

import fcntl
import struct
import termios

__all__ = ["unread_output"]


def unread_output(fd: int) -> int:
    """Bytes written on the stream socket ``fd`` that are still queued (``SIOCOUTQ``).

    On a unix stream socket that is what the peer has not read yet: a sent buffer is
    charged to the sender until the receiver has consumed it. Example: after
    ``a.send(b"hi")`` on a socketpair, ``unread_output(a.fileno())`` is non-zero until
    ``b.recv(2)``, then 0.
    """
    raw = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ is TIOCOUTQ on Linux
    return int(struct.unpack("i", raw)[0])
