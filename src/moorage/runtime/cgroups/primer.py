"""Priming the kernel's cgroup attach path ahead of a container's creation.

See ``moorage.sys.cgroupfs.prime_attach`` for why: the first process move after a
quiet spell waits for an RCU grace period, and a caller that knows a create is
coming (the engine, as a start begins) can let that wait pass while it does other
work. One priming at a time: callers that come while one runs share it.
"""

from __future__ import annotations

import threading

from moorage.sys.cgroupfs import prime_attach

__all__ = ["prime_cgroup_attach"]

_running = threading.Lock()


def prime_cgroup_attach() -> None:
    """Start priming in a background thread and return at once; nothing if one runs."""
    if not _running.acquire(blocking=False):
        return
    try:
        threading.Thread(target=_prime, name="cgroup-primer", daemon=True).start()
    except BaseException:
        _running.release()
        raise


def _prime() -> None:
    try:
        prime_attach()
    finally:
        _running.release()
