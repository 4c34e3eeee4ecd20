"""One thread that waits on every container monitor's pidfd.

A pidfd works for any process, not only our children, so a monitor the daemon
adopted after a restart is watched the same way as one it started.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable


class MonitorWatcher:
    """One thread that waits on every monitor's pidfd and reports each exit once."""

    def __init__(self, on_exit: Callable[[str, int], None]) -> None:
        self._on_exit = on_exit
        self._poll = select.epoll()
        self._lock = threading.Lock()
        self._by_fd: dict[int, tuple[str, int]] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._poll.register(self._wake_r, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="monitor-watcher", daemon=True)
        self._stopped = False
        self._thread.start()

    def add(self, cid: str, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            threading.Thread(target=self._on_exit, args=(cid, pid), daemon=True).start()
            return
        with self._lock:
            self._by_fd[fd] = (cid, pid)
        self._poll.register(fd, select.EPOLLIN)

    def forget(self, cid: str) -> None:
        with self._lock:
            fds = [fd for fd, (c, _) in self._by_fd.items() if c == cid]
            for fd in fds:
                del self._by_fd[fd]
        for fd in fds:
            with contextlib.suppress(OSError):
                self._poll.unregister(fd)
            os.close(fd)

    def _run(self) -> None:
        while not self._stopped:
            try:
                ready = self._poll.poll()
            except InterruptedError:
                continue
            for fd, _ in ready:
                if fd == self._wake_r:
                    continue
                with self._lock:
                    entry = self._by_fd.pop(fd, None)
                if entry is None:
                    continue
                with contextlib.suppress(OSError):
                    self._poll.unregister(fd)
                os.close(fd)
                # Each exit is handled in its own thread: a restart policy or an
                # auto-remove must not delay the report of the next exit.
                threading.Thread(target=self._on_exit, args=entry, daemon=True).start()

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        with self._lock:
            for fd in self._by_fd:
                os.close(fd)
            self._by_fd.clear()
        self._poll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
