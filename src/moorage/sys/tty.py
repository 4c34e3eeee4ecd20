"""Pseudo-terminals: allocate from a devpts instance, size, controlling terminal."""

from __future__ import annotations

import fcntl
import os
import struct
import termios

__all__ = ["make_controlling", "open_pty", "set_winsize", "get_winsize"]

_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


def open_pty(ptmx: str = "/dev/pts/ptmx") -> tuple[int, str]:
    """Open a new pty pair's master from ``ptmx``; return (master fd, slave path).

    Opening the ptmx of the container's own devpts (not the host's /dev/ptmx)
    makes the slave live in the container's /dev/pts.
    """
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    (number,) = struct.unpack("i", fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0"))
    return master, f"{os.path.dirname(ptmx)}/{number}"


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def make_controlling(fd: int) -> None:
    """Make ``fd`` the controlling terminal of this (session-leader) process."""
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
