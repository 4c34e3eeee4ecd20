"""A sealed in-memory copy of the interpreter, for processes that enter containers.

A process that runs inside a container before exec'ing the user's program is a
Python process, so ``/proc/<pid>/exe`` names the host's interpreter. A hostile
container can reach that file through /proc (for example by making its
entrypoint ``#!/proc/self/exe``) and rewrite it on the host: the CVE-2019-5736
class. Running those processes from a sealed memfd copy makes ``/proc/self/exe``
a file that cannot be written, grown or shrunk by anyone, root included.
"""

from __future__ import annotations

import fcntl
import os
import sys

from moorage.errors import InvalidArgument

__all__ = ["adopt", "running_sealed", "sealed_interpreter"]

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

_cached: int | None = None


def sealed_interpreter(cache: bool = False) -> int:
    """Return a close-on-exec fd of a sealed copy of ``sys.executable``.

    With ``cache`` the copy is made once per process and reused (a daemon starts
    many containers); the caller must then not close it.
    """
    global _cached
    if cache and _cached is not None:
        return _cached
    src = os.open(os.path.realpath(sys.executable), os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(src).st_size
        fd = os.memfd_create("moor-runtime", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        offset = 0
        while offset < size:
            sent = os.sendfile(fd, src, offset, size - offset)
            if sent == 0:
                break
            offset += sent
    finally:
        os.close(src)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    if cache:
        _cached = fd
    return fd


def running_sealed() -> bool:
    """True when this process runs from a sealed copy: ``/proc/self/exe`` cannot be
    written, grown or shrunk (a process exec'd from :func:`sealed_interpreter`, or a
    fork of one)."""
    try:
        fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:  # EINVAL: not a memfd, so a file on some filesystem
        return False
    finally:
        os.close(fd)
    needed = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    return seals & needed == needed


def adopt(fd: int) -> None:
    """Make ``fd``, a sealed copy handed down by whoever exec'd this process from it,
    the copy :func:`sealed_interpreter` returns with ``cache`` (close-on-exec).

    For a warm process that starts stages: it then makes no copy of its own.
    InvalidArgument if ``fd`` is not sealed against writing.
    """
    global _cached
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as exc:
        raise InvalidArgument(f"descriptor {fd}: not a sealed copy: {exc.strerror}") from exc
    if seals & _SEALS != _SEALS:
        raise InvalidArgument(f"descriptor {fd}: not sealed against writing")
    os.set_inheritable(fd, False)
    _cached = fd
