"""Starting the stage process that becomes a container (see ``moorage.runtime.init``).

The stage is never a plain fork of the caller: the caller may be a threaded
asyncio daemon, and the container must never see a writable host executable
behind /proc/self/exe. Two ways satisfy both:

- a fresh interpreter exec'd from a sealed memfd copy (what the CLI does);
- a fork of a *zygote*: one long-lived interpreter exec'd the same way, already
  warm, that forks a stage per request (what a long-running caller should use:
  ``start_zygote()`` once, and every later container skips an interpreter start).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import IO, Protocol

import moorage
from moorage.errors import InvalidArgument, NotFound, Unavailable
from moorage.runtime.sync import Channel
from moorage.sys.sealed import sealed_interpreter

_BOOT = "import sys; sys.path[:0] = {paths!r}; from moorage.runtime.init import main; main()"

Stdio = int | IO[bytes] | None


class Stage(Protocol):
    """The stage process as the caller sees it."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...

    def kill(self) -> None: ...


def _interpreter_command(label: str) -> tuple[list[str], dict[str, str], int]:
    exe = sealed_interpreter(cache=True)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(moorage.__file__)))
    paths = [package_root, *(p for p in sys.path if p and p != package_root)]
    env = {
        "PYTHONHOME": f"{sys.base_prefix}:{sys.base_exec_prefix}",
        "_MOOR_EXE_FD": str(exe),
    }
    for name in ("MOOR_RUNTIME_DEBUG", "MOOR_RUNTIME_TRACE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    # The label (the container id) shows in ps as the script argument.
    argv = ["moor-runtime-init", "-S", "-s", "-B", "-c", _BOOT.format(paths=paths), label]
    return argv, env, exe


def _fileno(stream: Stdio, default: int, opened: list[int]) -> int:
    """A real descriptor for ``stream``; /dev/null for DEVNULL (closed by the caller)."""
    if stream is None:
        return default
    if stream == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(fd)
        return fd
    if isinstance(stream, int):
        if stream < 0:
            raise InvalidArgument("the zygote takes descriptors, not subprocess.PIPE")
        return stream
    return stream.fileno()


def spawn_stage(
    *,
    label: str = "",
    preserve_fds: int = 0,
    extra_fds: Iterable[int] = (),
    stdin: Stdio = None,
    stdout: Stdio = None,
    stderr: Stdio = None,
) -> tuple[Stage, Channel]:
    """Start a stage; its descriptors keep their numbers (preserved ones: 3, 4, ...)."""
    extra = list(extra_fds)
    if _zygote is not None:
        try:
            return _zygote.spawn(preserve_fds, extra, (stdin, stdout, stderr))
        except Unavailable as exc:
            # A dead zygote costs speed, not containers: fall back to a fresh interpreter.
            import logging

            logging.getLogger(__name__).warning("%s: starting stages directly", exc)
    argv, env, exe = _interpreter_command(label)
    parent, child = Channel.pair()
    env["_MOOR_SYNC_FD"] = str(child.fileno())
    pass_fds = (exe, child.fileno(), *range(3, 3 + preserve_fds), *extra)
    try:
        proc = subprocess.Popen(
            argv,
            executable=f"/proc/self/fd/{exe}",
            pass_fds=pass_fds,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
    finally:
        child.close()
    return proc, parent


def connect_console(path: str) -> socket.socket:
    """Connect to the caller's console socket, where the pty master will be sent."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise NotFound(f"console socket {path}: {exc.strerror or exc}") from exc
    return sock


class _ZygoteStage:
    """A stage forked by the zygote: not our child, so we watch it through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None

    def _wait(self, timeout: float | None) -> bool:
        import select

        if self._pidfd is None:
            return True
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        if poller.poll(None if timeout is None else int(timeout * 1000)):
            os.close(self._pidfd)
            self._pidfd = None
            return True
        return False

    def poll(self) -> int | None:
        return 0 if self._wait(0) else None

    def wait(self) -> int:
        self._wait(None)
        return 0

    def kill(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


class Zygote:
    """A warm stage interpreter that forks one stage per container."""

    def __init__(self) -> None:
        argv, env, exe = _interpreter_command("zygote")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env["_MOOR_ZYGOTE_FD"] = str(theirs.fileno())
        try:
            self._proc = subprocess.Popen(
                argv,
                executable=f"/proc/self/fd/{exe}",
                pass_fds=(exe, theirs.fileno()),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._control = ours
        self._lock = threading.Lock()
        self.spawned = 0  # stages served, for callers and tests that want to know

    def spawn(
        self, preserve_fds: int, extra: list[int], stdio: tuple[Stdio, Stdio, Stdio]
    ) -> tuple[Stage, Channel]:
        parent, child = Channel.pair()
        opened: list[int] = []
        try:
            fds = [child.fileno()] + [_fileno(s, n, opened) for n, s in enumerate(stdio)]
            fds += list(range(3, 3 + preserve_fds)) + extra
            targets = [0, 1, 2, *range(3, 3 + preserve_fds), *extra]
            with self._lock:
                try:
                    socket.send_fds(self._control, [marshal.dumps({"targets": targets})], fds)
                    reply = self._control.recv(4096)
                except OSError as exc:
                    raise Unavailable(f"runtime zygote: {exc.strerror}") from exc
            if not reply:
                raise Unavailable("runtime zygote exited")
            pid = marshal.loads(reply)["pid"]
            self.spawned += 1
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
            for fd in opened:
                os.close(fd)
        return _ZygoteStage(pid), parent

    def close(self) -> None:
        self._control.close()
        self._proc.wait()


_zygote: Zygote | None = None


def start_zygote() -> Zygote:
    """Serve every later stage of this process from a zygote (idempotent)."""
    global _zygote
    if _zygote is None:
        _zygote = Zygote()
    return _zygote


def stop_zygote() -> None:
    global _zygote
    if _zygote is not None:
        _zygote.close()
        _zygote = None
