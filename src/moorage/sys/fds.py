"""Descriptor hygiene for processes about to exec into a container."""

import os

__all__ = ["close_fds_from"]


def close_fds_from(first: int, keep: frozenset[int] = frozenset()) -> None:
    """Mark every descriptor >= ``first`` close-on-exec (except ``keep``).

    Marking rather than closing keeps descriptors the caller still needs until
    exec (the exec fifo, the sync socket) while guaranteeing none reaches the
    container's process: the class of leak behind CVE-2024-21626.
    """
    for fd in os.listdir("/proc/self/fd"):
        n = int(fd)
        if n >= first and n not in keep:
            try:
                os.set_inheritable(n, False)
            except OSError:
                continue  # the descriptor of the listdir itself, already gone
