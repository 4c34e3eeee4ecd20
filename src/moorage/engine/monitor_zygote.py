"""A warm interpreter that forks the container monitors (``engine.monitor``).

Starting a monitor as ``python -m moorage.engine.monitor DIR`` costs an interpreter
start and its imports at every container start, and each monitor then holds its
own copy of everything it imported. The daemon's :class:`MonitorZygote` instead
keeps one process (started on the first launch, again after it died, ended by
:meth:`MonitorZygote.close`) that has imported all a monitor and the runtime's
create path use, given its free C heap back (``malloc_trim``), frozen the GC
(``gc.freeze``: the forks' collections never walk, so never copy, those objects)
and forks one monitor per launch; the monitors share its pages.

The zygote is exec'd from the sealed memfd copy of the interpreter
(``runtime.spawn.sealed_command``), like the runtime's own zygote: /proc/self/exe of
every monitor, and of every stage a monitor forks (the runtime's fork mode, see
``engine.monitor``), is a file nobody can write. Its command line has
``moorage.engine.monitor zygote`` and the daemon's label (its exec root). A monitor
it forks rewrites that (``_retitle``) to ``moor-monitor moorage.engine.monitor DIR``,
so that it reads as a monitor started as a command does, and the daemon recognises
it after a restart the same way; should the rewrite fail, by its working directory,
``DIR``, and the zygote's command line.

Requests come on a ``SOCK_SEQPACKET`` socket: ``{"directory": DIR}`` as JSON, with
one descriptor (SCM_RIGHTS), the write end of the launcher's ready pipe. They are
taken by a *spare*, forked before the request comes, so that a launch costs no
fork: the zygote forks a child that makes a new session, forks the spare and exits
at once (so the spare, and the monitor it becomes, is nobody's child but init's
and outlives the zygote and the daemon), then waits. The spare takes one request,
answers ``{"pid": N}`` (its own pid: it is that monitor) or ``{"error": text}``
(nothing runs), tells the zygote (which then forks the next spare) and becomes the
monitor: stdin /dev/null, stdout and stderr appended to ``DIR/monitor.log``, ``DIR``
as working directory, no other descriptor but the ready pipe and the sealed copy
(for the stages of its execs); then ``engine.monitor.serve(DIR, ready_fd)``. So
requests are taken one at a time, and every process here is single-threaded, as a
process that forks must be. The zygote sends ``{"ready": true}`` once it is
warm; when the socket closes, the spare exits, and then the zygote.

What a monitor costs is the pages it copies: those it writes, and those the zygote
writes after forking it; the zygote writes little (a fork and a wait per launch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from moorage.engine.monitor_client import await_ready, conclude, parse_ready, read_ready, write_task
from moorage.errors import Unavailable

if TYPE_CHECKING:
    from typing import NoReturn

log = logging.getLogger(__name__)

_FD_ENV = "_MOOR_MONITOR_ZYGOTE_FD"
_MAX_REPLY = 65536


# -- the daemon's side ---------------------------------------------------------------


class _Forked:
    """A monitor the zygote forked: not our child, so watched through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None

    def kill(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        """None: the status of a process that is not our child is not ours to know."""
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            if not poller.poll(None if timeout is None else int(timeout * 1000)):
                raise subprocess.TimeoutExpired("container monitor", timeout or 0)
        return None

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


_LOST = {"lost": True}  # no reply: whether a monitor started is not known yet


class MonitorZygote:
    """The daemon's zygote. ``label`` goes into its command line (the daemon passes
    its exec root), and so tells whose zygote it is."""

    #: After a zygote failed to start, launches go the slow way this long (seconds).
    RETRY_AFTER = 30.0

    def __init__(self, label: str, start_timeout: float = 10.0) -> None:
        self.label = label
        self.start_timeout = start_timeout
        self._lock = threading.Lock()  # one request at a time; guards the fields below
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._closed = False
        self._retry_at = 0.0
        self.starts = 0  # zygotes started so far, for tests that want to know

    @property
    def pid(self) -> int | None:
        """The running zygote's pid, if one runs."""
        with self._lock:
            alive = self._proc is not None and self._proc.poll() is None
            return self._proc.pid if alive and self._proc is not None else None

    def launch(self, directory: str, task: dict[str, Any], timeout: float = 30.0) -> int | None:
        """As ``monitor_client.launch`` (which calls this): the monitor's pid once the
        container is created, or the error. None when the zygote could not take the
        request, so that no monitor was started: the caller starts one itself."""
        ready_r, ready_w = os.pipe()
        try:
            try:
                write_task(directory, task)
            except OSError as exc:
                what = f"container monitor in {directory}: cannot start"
                raise Unavailable(f"{what}: {exc.strerror or exc}") from exc
            reply = self._request(directory, ready_w, timeout)
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        try:
            if reply is None:
                return None
            if reply is _LOST:
                return self._recover(directory, ready_r, timeout)
            if type(reply.get("pid")) is not int:
                log.warning("monitor zygote: %s", reply.get("error", "bad reply"))
                return None
            monitor = _Forked(reply["pid"])
            try:
                return await_ready(monitor, ready_r, directory, timeout)
            finally:
                monitor.close()
        finally:
            os.close(ready_r)

    def _recover(self, directory: str, ready_r: int, timeout: float) -> int | None:
        """The zygote or its spare died holding our request (both are gone or going now):
        a monitor, if the spare became one, answers on the ready pipe; if none did, the
        pipe closes once the socket that held the request is gone."""
        try:
            line = read_ready(ready_r, timeout)
        except TimeoutError:
            what = f"container monitor in {directory}"
            raise Unavailable(f"{what}: not ready within {timeout:g}s") from None
        reply = parse_ready(line)
        if reply is None:
            return None  # nobody holds the pipe: no monitor
        pid = reply.get("monitor_pid")
        if type(pid) is not int:
            if reply.get("ok") is True:
                reply = {"ok": False, "error": "container monitor: bad ready line"}
            pid = 0
        monitor = _Forked(pid) if pid else _Gone()
        try:
            return conclude(monitor, reply, directory, timeout)
        finally:
            monitor.close()

    def _request(self, directory: str, ready_w: int, timeout: float) -> dict[str, Any] | None:
        payload = json.dumps({"directory": directory}).encode()
        with self._lock:
            if self._closed:
                return None
            control = self._running()
            if control is None:
                return None
            try:
                socket.send_fds(control, [payload], [ready_w])
            except OSError as exc:
                self._stop(f"cannot send: {exc}")
                return None
            try:
                control.settimeout(timeout)
                raw = control.recv(_MAX_REPLY)
            except OSError as exc:
                raw = b""
                log.warning("monitor zygote: no reply: %s", exc)
            if not raw:
                self._stop("died during a request")
                return _LOST
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = None
        return reply if isinstance(reply, dict) else {"error": f"bad reply {raw[:80]!r}"}

    def _running(self) -> socket.socket | None:
        """The control socket of a live zygote, started if need be (under the lock)."""
        if self._proc is not None and self._proc.poll() is None and self._control is not None:
            return self._control
        if self._proc is not None:
            self._stop("exited")
        if time.monotonic() < self._retry_at:
            return None
        try:
            self._start()
        except (OSError, ValueError) as exc:
            log.warning("monitor zygote: cannot start: %s", exc)
            self._stop(None)
            self._retry_at = time.monotonic() + self.RETRY_AFTER
            return None
        return self._control

    def _start(self) -> None:
        from moorage.runtime.spawn import sealed_command

        argv, env, exe = sealed_command(
            "moor-monitor", __name__, "moorage.engine.monitor", "zygote", self.label
        )
        if os.environ.get("PATH"):
            env["PATH"] = os.environ["PATH"]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = ours
        env[_FD_ENV] = str(theirs.fileno())
        try:
            self._proc = subprocess.Popen(
                argv,
                executable=f"/proc/self/fd/{exe}",
                pass_fds=(exe, theirs.fileno()),
                env=env,
                stdin=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,  # a Ctrl-C at the daemon's terminal is the daemon's
            )
        finally:
            theirs.close()
        self.starts += 1
        ours.settimeout(self.start_timeout)
        hello = ours.recv(_MAX_REPLY)
        if json.loads(hello or b"null") != {"ready": True}:
            raise ValueError(f"no ready message ({hello[:80]!r})")

    def _stop(self, why: str | None) -> None:
        """Forget the zygote: close its socket (it exits), kill it if it does not (under
        the lock)."""
        if why is not None:
            log.warning("monitor zygote: %s: it will be started again", why)
        if self._control is not None:
            self._control.close()
            self._control = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """End the zygote and reap it; its monitors run on. Later launches return None."""
        with self._lock:
            self._closed = True
            self._stop(None)


class _Gone:
    """A monitor whose pid is unknown or that has exited."""

    pid = 0

    def kill(self) -> None:
        return

    def wait(self, timeout: float | None = None) -> int | None:
        return None

    def close(self) -> None:
        return


# -- the zygote's side ---------------------------------------------------------------


def main() -> NoReturn:
    """The zygote process (see the module): preload, freeze, keep one spare ready."""
    import gc

    from moorage.sys import libc, sealed

    # Our sealed copy stays open: the stages of the monitors' execs are exec'd from it.
    sealed.adopt(int(os.environ.pop("_MOOR_EXE_FD")))
    control = socket.socket(fileno=int(os.environ.pop(_FD_ENV)))
    os.set_inheritable(control.fileno(), False)
    os.environ.pop("PYTHONHOME", None)
    _preload()
    gc.collect()
    libc.malloc_trim()
    gc.freeze()
    control.send(b'{"ready": true}')
    while True:
        taken_r, taken_w = os.pipe()
        child = os.fork()
        if child == 0:
            _middle(control, taken_r, taken_w)
        os.close(taken_w)
        os.waitpid(child, 0)
        # Blocks until the spare has taken a request; end of file: it saw the socket
        # close (the daemon is gone or done with us) or it died, and so do we.
        taken = os.read(taken_r, 1)
        os.close(taken_r)
        if not taken:
            os._exit(0)


def _preload() -> None:
    """Import what a monitor, the runtime's create path and a stage use, once for all.

    Not the runtime's hooks (their JSON library pulls in much) nor libseccomp's
    binding (profiles are compiled once, then cached): rare, imported when needed.
    """
    import base64  # noqa: F401
    import encodings.ascii
    import encodings.latin_1
    import encodings.utf_8  # noqa: F401
    import hashlib  # noqa: F401
    import marshal  # noqa: F401
    import resource  # noqa: F401
    import selectors  # noqa: F401

    from moorage.engine import logs, monitor  # noqa: F401
    from moorage.oci import runtime_spec  # noqa: F401
    from moorage.runtime import api, init, seccomp_cache  # noqa: F401
    from moorage.runtime.cgroups import manager, v1, v2  # noqa: F401
    from moorage.sys import caps, netdev, seccomp_bpf, tty  # noqa: F401

    caps.last_cap()


def _middle(control: socket.socket, taken_r: int, taken_w: int) -> NoReturn:
    """The zygote's child: a new session, the spare forked, exit at once."""
    try:
        os.close(taken_r)
        os.setsid()
        if os.fork() == 0:
            try:
                _spare(control, taken_w)
            except BaseException:  # noqa: BLE001 - a bug: say so where someone looks
                import traceback

                traceback.print_exc()
                os._exit(1)
    finally:
        os._exit(0)


def _spare(control: socket.socket, taken_w: int) -> NoReturn:
    """Wait for one request, answer it, tell the zygote, become that monitor."""
    try:
        raw, fds, _, _ = socket.recv_fds(control, _MAX_REPLY, 4, socket.MSG_CMSG_CLOEXEC)
    except OSError:
        os._exit(0)
    if not raw:
        os._exit(0)
    try:
        directory = _directory_of(raw, fds)
        reply = json.dumps({"pid": os.getpid()}).encode()
    except ValueError as exc:
        directory = None
        reply = json.dumps({"error": str(exc)}).encode()
    try:
        control.send(reply)
    except OSError:
        directory = None  # nobody waits for this monitor: it must not run
    with contextlib.suppress(OSError):  # a dead zygote: the daemon starts another
        os.write(taken_w, b"t")
    os.close(taken_w)
    if directory is None:
        os._exit(0)
    _become_monitor(control, directory, fds[0])


def _directory_of(raw: bytes, fds: list[int]) -> str:
    try:
        request = json.loads(raw)
    except ValueError:
        request = None
    directory = request.get("directory") if isinstance(request, dict) else None
    if not isinstance(directory, str) or not os.path.isabs(directory):
        raise ValueError("bad request: directory must be an absolute path")
    if len(fds) != 1:
        raise ValueError(f"bad request: expected 1 descriptor (the ready pipe), got {len(fds)}")
    return directory


def _become_monitor(control: socket.socket, directory: str, ready_fd: int) -> NoReturn:
    from moorage.engine import monitor
    from moorage.sys import sealed

    try:
        control.close()
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        log_fd = os.open(
            os.path.join(directory, "monitor.log"),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
            0o666,
        )
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)
        os.chdir(directory)
        _retitle(["moor-monitor", "moorage.engine.monitor", directory])
        keep = {0, 1, 2, ready_fd, sealed.sealed_interpreter(cache=True)}
        for entry in os.listdir("/proc/self/fd"):
            if int(entry) not in keep:
                with contextlib.suppress(OSError):
                    os.close(int(entry))
    except OSError as exc:
        with contextlib.suppress(OSError):
            message = {"ok": False, "error": f"container monitor: {exc}"}
            os.write(ready_fd, json.dumps(message).encode() + b"\n")
        os._exit(127)
    monitor.serve(directory, ready_fd)


def _retitle(argv: list[str]) -> bool:
    """Make /proc/self/cmdline read ``argv``: written over the memory of our own command
    line (the zygote's, longer: it carries the interpreter's boot script), padded with
    NULs, as setproctitle does; the interpreter keeps copies of its arguments. False
    (the command line unchanged) when the kernel does not show where it is, or it is
    too short."""
    import ctypes

    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48, 49
    data = b"\0".join(a.encode() for a in argv) + b"\0"
    if not start or len(data) > end - start:
        return False
    ctypes.memmove(start, data.ljust(end - start, b"\0"), end - start)
    return True
