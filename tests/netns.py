"""Running test code inside a named network namespace (``ip netns add NAME``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from moorage.sys import libc

T = TypeVar("T")


def in_netns(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a thread that entered namespace ``name``; the thread then ends."""
    result: list[T] = []
    failed: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc.setns(fd, libc.CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(fn(*args, **kwargs))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return result[0]
