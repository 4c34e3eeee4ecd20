"""Telling a peer that hung up from one that only finished sending.

On a unix stream socket, the peer's ``close()`` shuts both directions of ours and the
kernel reports ``EPOLLHUP``; its ``shutdown(SHUT_WR)`` (``docker run -i`` once its
input ends) only ends what we read, which a plain read cannot tell apart. dockerd
watches an attach's socket for ``EPOLLHUP`` to end an attach whose client has gone;
:class:`HangupWatch` is that watch as a descriptor an event loop can wait on.
"""

from __future__ import annotations

import select

__all__ = ["HangupWatch"]


class HangupWatch:
    """An epoll descriptor that becomes readable once the peer of ``fd`` hangs up.

    Example, on an event loop: ``loop.add_reader(watch.fileno(), on_hangup)``; then
    ``watch.close()`` when done. Only hang-ups are watched: ``EPOLLHUP`` and
    ``EPOLLERR`` are reported whatever the event mask, so the mask is empty.
    """

    def __init__(self, fd: int) -> None:
        self._epoll = select.epoll()
        try:
            self._epoll.register(fd, 0)
        except OSError:
            self._epoll.close()
            raise

    def fileno(self) -> int:
        return self._epoll.fileno()

    def hung_up(self) -> bool:
        """Whether the peer has hung up (does not block)."""
        return bool(self._epoll.poll(0))

    def close(self) -> None:
        self._epoll.close()
