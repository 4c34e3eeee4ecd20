"""Starting the stage process that becomes a container (see ``moorage.runtime.init``).

The stage is never a plain fork of an arbitrary caller: the caller may be a
threaded asyncio daemon, and the container must never see a writable host
executable behind /proc/self/exe. Three ways satisfy both:

- a fresh interpreter exec'd from a sealed memfd copy (what the CLI does, and the
  default);
- a fork of a *zygote*: one long-lived interpreter exec'd the same way, already
  warm, that forks a stage per request (what a long-running caller should use:
  ``start_zygote()`` once, and every later container skips an interpreter start);
- *fork mode* (``fork_stages()``): the caller forks itself. Allowed only for a
  caller that itself runs from a sealed copy (``moorage.sys.sealed.running_sealed``,
  checked when the mode is turned on) and only while it is single-threaded
  (checked at each stage, through /proc/self/task, so C threads count too; a
  threaded caller gets FailedPrecondition, never a fork). The child runs the same
  code as a zygote's child (``init.forked_stage``), with the same descriptors at
  the same numbers, and is the caller's own child (``_ChildStage``). The engine's
  monitor (forked from ``engine.monitor_zygote``) creates its container in a
  throwaway fork of itself that turns it on; its execs, made once it has threads,
  start a fresh interpreter.

Fork mode comes first, then a zygote, then a fresh interpreter.
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
from moorage.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from moorage.runtime.sync import Channel
from moorage.sys.sealed import running_sealed, sealed_interpreter

_BOOT = "import sys; sys.path[:0] = {paths!r}; from {module} import main; main()"

Stdio = int | IO[bytes] | None


class Stage(Protocol):
    """The stage process as the caller sees it."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...

    def kill(self) -> None: ...


def sealed_command(name: str, module: str, *args: str) -> tuple[list[str], dict[str, str], int]:
    """Run ``module.main()`` in a fresh interpreter exec'd from the sealed copy.

    Returns ``argv`` (``name``, the interpreter's options and script, then ``args``),
    the environment (only ``PYTHONHOME``, ``_MOOR_EXE_FD``: the copy's descriptor,
    for ``main()`` to take, and the runtime's debug switches) and the descriptor, for
    ``Popen(argv, executable=f"/proc/self/fd/{exe}", pass_fds=(exe, ...), env=env)``.
    """
    exe = sealed_interpreter(cache=True)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(moorage.__file__)))
    paths = [package_root, *(p for p in sys.path if p and p != package_root)]
    env = {
        "PYTHONHOME": f"{sys.base_prefix}:{sys.base_exec_prefix}",
        "_MOOR_EXE_FD": str(exe),
    }
    for var in ("MOOR_RUNTIME_DEBUG", "MOOR_RUNTIME_TRACE"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    boot = _BOOT.format(paths=paths, module=module)
    return [name, "-S", "-s", "-B", "-c", boot, *args], env, exe


def _interpreter_command(label: str) -> tuple[list[str], dict[str, str], int]:
    # The label (the container id) shows in ps as the script argument.
    return sealed_command("moor-runtime-init", "moorage.runtime.init", label)


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
    if _fork_mode:
        return _fork_stage(preserve_fds, extra, (stdin, stdout, stderr))
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


def _stage_fds(
    child: Channel,
    preserve_fds: int,
    extra: list[int],
    stdio: tuple[Stdio, Stdio, Stdio],
    opened: list[int],
) -> tuple[list[int], list[int]]:
    """What a forked stage gets, as ``init.forked_stage`` takes it: the descriptors
    (the sync socket first) and the numbers each must have in the stage."""
    fds = [child.fileno()] + [_fileno(s, n, opened) for n, s in enumerate(stdio)]
    fds += list(range(3, 3 + preserve_fds)) + extra
    return fds, [0, 1, 2, *range(3, 3 + preserve_fds), *extra]


# -- fork mode ---------------------------------------------------------------------

_fork_mode = False


def fork_stages(enabled: bool = True) -> None:
    """Fork this process for every later stage (``enabled``), or stop (see the module).

    Turning it on raises FailedPrecondition unless /proc/self/exe is a sealed copy.
    """
    global _fork_mode
    if enabled and not running_sealed():
        raise FailedPrecondition("fork mode: this process does not run from a sealed copy")
    _fork_mode = enabled


class _ChildStage:
    """A stage forked from this process: our own child, waited for by pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:  # reaped elsewhere: as subprocess, call it 0
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self) -> int:
        code = self._reap(0)
        assert code is not None
        return code

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _fork_stage(
    preserve_fds: int, extra: list[int], stdio: tuple[Stdio, Stdio, Stdio]
) -> tuple[Stage, Channel]:
    from moorage.runtime.init import forked_stage  # loaded before the fork, not in the child

    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise FailedPrecondition(
            f"fork mode: forking a stage needs a single-threaded process ({threads} threads)"
        )
    parent, child = Channel.pair()
    opened: list[int] = []
    try:
        fds, targets = _stage_fds(child, preserve_fds, extra, stdio, opened)
        for stream in (sys.stdout, sys.stderr):  # nothing of ours in the stage's output
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.chdir("/")  # the caller's directory is no business of the container's
                forked_stage(fds, targets, always_fork=False)
            finally:
                os._exit(127)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
        for fd in opened:
            os.close(fd)
    return _ChildStage(pid), parent


# -- the zygote --------------------------------------------------------------------


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
            fds, targets = _stage_fds(child, preserve_fds, extra, stdio, opened)
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
