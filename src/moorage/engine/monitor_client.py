"""Talking to a per-container monitor (``engine.monitor``): launch it, then use its socket.

Synchronous and standard-library only: the daemon calls it from worker threads::

    pid = launch(container_dir, task)            # created, not started; raises if not
    pid = launch(container_dir, task, zygote=z)  # the same, forked by a MonitorZygote
    client = MonitorClient(task["socket"])
    stream = client.attach(stdin=False, stdout=True, stderr=True)
    client.start()                                # output from now on is on `stream`
    handle = client.exec(process, "exec1", fds=(stdin_r, stdout_w, stderr_w))
    code = handle.wait()

Errors are MoorageErrors: a monitor that does not answer is :class:`Unavailable`; a
refusal is :class:`NotFound` when its text says something was not found (a runtime's
``executable file not found``, kept word for word), else the class the monitor named
(``kind``), else :class:`FailedPrecondition`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from moorage.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    PermissionDenied,
    Unavailable,
)

if TYPE_CHECKING:
    from moorage.engine.monitor_zygote import MonitorZygote

__all__ = ["ExecHandle", "MonitorClient", "error_from_reply", "launch"]

_MAX_LINE = 1 << 20
_KINDS: dict[str, type[MoorageError]] = {
    cls.__name__: cls
    for cls in (
        AlreadyExists,
        Conflict,
        FailedPrecondition,
        InvalidArgument,
        NotFound,
        NotSupported,
        PermissionDenied,
    )
}
_NOT_FOUND = ("not found", "does not exist", "no such")


def error_from_reply(reply: dict[str, Any]) -> MoorageError:
    """The MoorageError for an ``{"ok": false, ...}`` reply, its text kept intact."""
    text = str(reply.get("error") or "container monitor: request failed")
    if any(words in text.lower() for words in _NOT_FOUND):
        return NotFound(text)
    kind = reply.get("kind")
    return _KINDS.get(kind if isinstance(kind, str) else "", FailedPrecondition)(text)


def _read_line(sock: socket.socket, what: str, maxfds: int = 0) -> tuple[bytes | None, list[int]]:
    """One line, without reading a byte past it (a stream may follow); None at EOF.

    Peeks first, so a reply's descriptors (SCM_RIGHTS) are taken with its bytes.
    """
    line = bytearray()
    fds: list[int] = []
    try:
        while True:
            peeked = sock.recv(65536, socket.MSG_PEEK)
            if not peeked:
                return None, fds
            end = peeked.find(b"\n")
            want = end + 1 if end >= 0 else len(peeked)
            while want:
                data, got, _, _ = socket.recv_fds(
                    sock, want, max(maxfds, 1), socket.MSG_CMSG_CLOEXEC
                )
                fds += got
                if not data:
                    return None, fds
                line += data
                want -= len(data)
            if end >= 0:
                return bytes(line[:-1]), fds
            if len(line) > _MAX_LINE:
                raise Unavailable(f"{what}: reply longer than {_MAX_LINE} bytes")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _parse(line: bytes, what: str) -> dict[str, Any]:
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise Unavailable(f"{what}: bad reply: {exc}") from None
    if not isinstance(reply, dict):
        raise Unavailable(f"{what}: bad reply: not a JSON object")
    return reply


class MonitorClient:
    """Requests to the monitor listening on ``socket_path``, one connection each.

    ``timeout`` bounds connecting and waiting for a reply (not attach streams, not
    an exec's wait for its exit)."""

    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._what = f"container monitor {socket_path}"

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise Unavailable(f"{self._what}: not running") from exc
        except OSError as exc:
            sock.close()
            raise Unavailable(f"{self._what}: {exc.strerror or exc}") from exc
        return sock

    def _request(
        self, request: dict[str, Any], fds: Sequence[int] = (), maxfds: int = 0
    ) -> tuple[socket.socket, dict[str, Any], list[int]]:
        """Send ``request``; return the open connection, the (ok) reply and its fds."""
        sock = self._connect()
        try:
            data = json.dumps(request, separators=(",", ":")).encode() + b"\n"
            try:
                if fds:
                    sent = socket.send_fds(sock, [data], list(fds))
                    data = data[sent:]
                if data:
                    sock.sendall(data)
                line, got = _read_line(sock, self._what, maxfds)
            except TimeoutError:
                raise Unavailable(f"{self._what}: no answer within {self.timeout:g}s") from None
            except OSError as exc:
                raise Unavailable(f"{self._what}: {exc.strerror or exc}") from exc
            if line is None:
                raise Unavailable(f"{self._what}: closed the connection without an answer")
            reply = _parse(line, self._what)
            if reply.get("ok") is not True:
                for fd in got:
                    os.close(fd)
                raise error_from_reply(reply)
            return sock, reply, got
        except BaseException:
            sock.close()
            raise

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        sock, reply, _ = self._request(request)
        sock.close()
        reply.pop("ok", None)
        return reply

    def state(self) -> dict[str, Any]:
        """``status`` (created, running, exited), ``pid``, and ``exit_code`` once exited."""
        return self._call({"op": "state"})

    def start(self) -> int:
        """Start the created container; return its init's pid."""
        return int(self._call({"op": "start"})["pid"])

    def resize(self, height: int, width: int, exec_id: str | None = None) -> None:
        """Set the pty size of the container's process, or of exec ``exec_id``'s."""
        request: dict[str, Any] = {"op": "resize", "height": height, "width": width}
        if exec_id is not None:
            request["exec_id"] = exec_id
        self._call(request)

    def attach(self, *, stdin: bool, stdout: bool, stderr: bool) -> socket.socket:
        """A connection carrying output from now on (raw with a tty, else multiplexed
        frames) and taking stdin; ``shutdown(SHUT_WR)`` ends the stdin. Blocking, no
        timeout; the caller closes it."""
        request = {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}
        sock, _, _ = self._request(request)
        sock.settimeout(None)
        return sock

    def exec(self, process: dict[str, Any], exec_id: str, fds: Sequence[int] = ()) -> ExecHandle:
        """Start ``process`` (an OCI process object) in the container.

        Without a terminal ``fds`` are its stdin, stdout and stderr (they are sent, the
        caller keeps and closes its own); with ``process["terminal"]`` there are none
        and the handle has the pty master.
        """
        request = {"op": "exec", "process": process, "exec_id": exec_id}
        sock, reply, got = self._request(request, fds, maxfds=1)
        master = got[0] if got else None
        for extra in got[1:]:
            os.close(extra)
        return ExecHandle(sock, int(reply["pid"]), master, self._what)


class ExecHandle:
    """A running exec: its ``pid``, its pty ``master_fd`` (with a terminal, else None),
    and the connection its exit code will come on.

    ``master_fd`` is the caller's from the start: relay it, close it (its end of
    file, EIO, comes once the process has exited). :meth:`close` closes only the
    connection; closing it before :meth:`wait` returns gives up the exit code.
    """

    def __init__(self, sock: socket.socket, pid: int, master_fd: int | None, what: str) -> None:
        self.sock = sock
        self.pid = pid
        self.master_fd = master_fd
        self._what = what
        self._code: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Block until the process exits; return its exit code (128+N when signalled).

        TimeoutError after ``timeout`` seconds (the process still runs; wait again)."""
        if self._code is not None:
            return self._code
        self.sock.settimeout(timeout)
        try:
            line, _ = _read_line(self.sock, self._what)
        except TimeoutError:
            raise
        except OSError as exc:
            raise Unavailable(f"{self._what}: exec connection lost: {exc}") from exc
        if line is None:
            raise Unavailable(f"{self._what}: exec connection closed before the exit code")
        code = _parse(line, self._what).get("exit_code")
        if type(code) is not int:
            raise Unavailable(f"{self._what}: bad exit message")
        self._code = code
        return code

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ExecHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- launching ---------------------------------------------------------------------


class Launched(Protocol):
    """A monitor process being launched: a ``subprocess.Popen``, or a zygote's fork."""

    pid: int

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit status (None when unknown); subprocess.TimeoutExpired."""
        ...


class _Detached(subprocess.Popen[bytes]):
    """A monitor outlives this object: no "still running" warning, no reaping by
    ``subprocess``; the caller reaps the pid (or its own exit hands it to init)."""

    def __del__(self, *args: object, **kwargs: object) -> None:
        return


def write_task(directory: str, task: dict[str, Any], ready_fd: int | None = None) -> None:
    """Write ``directory/monitor.json``: ``task``, and the ready pipe's number if given."""
    data = task if ready_fd is None else {**task, "ready_fd": ready_fd}
    tmp = os.path.join(directory, f"monitor.json.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(json.dumps(data).encode())
    os.rename(tmp, os.path.join(directory, "monitor.json"))


def log_tail(path: str, size: int = 2000) -> str:
    """``": <the end of the file>"`` for an error message; "" when there is nothing."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - size))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f": {text}" if text else ""


def read_ready(fd: int, timeout: float) -> bytes | None:
    """The ready line, or None if the pipe closed without one; TimeoutError."""
    deadline = time.monotonic() + timeout
    buf = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(int(left * 1000) + 1):
            raise TimeoutError
        data = os.read(fd, 65536)
        if not data:
            return None
        buf += data
        if len(buf) > _MAX_LINE:
            return None
    return buf.split(b"\n", 1)[0]


def parse_ready(line: bytes | None) -> dict[str, Any] | None:
    """The ready line as a JSON object, or None."""
    if line is None:
        return None
    with contextlib.suppress(ValueError):
        parsed = json.loads(line)
        if isinstance(parsed, dict):
            return parsed
    return None


def await_ready(proc: Launched, ready_r: int, directory: str, timeout: float) -> int:
    """Wait for the ready line of ``proc`` on ``ready_r`` (the caller closes it);
    return its pid once the container is created, else raise as :func:`launch` does."""
    try:
        line = read_ready(ready_r, timeout)
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise Unavailable(
            f"container monitor in {directory}: not ready within {timeout:g}s"
            f"{log_tail(os.path.join(directory, 'monitor.log'))}"
        ) from None
    return conclude(proc, parse_ready(line), directory, timeout)


def conclude(proc: Launched, reply: dict[str, Any] | None, directory: str, timeout: float) -> int:
    """``proc.pid`` if ``reply`` (the ready line) says the container is created, else
    the error: the refusal it carries, or :class:`Unavailable` (no reply at all)."""
    if reply is not None and reply.get("ok") is True and type(reply.get("pid")) is int:
        return proc.pid
    try:
        status = proc.wait(timeout=timeout)  # it exits right after a refusal
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    if reply is not None and reply.get("ok") is False:
        raise error_from_reply(reply)
    how = f" (status {status})" if status is not None else ""
    raise Unavailable(
        f"container monitor in {directory}: exited before it was ready{how}"
        f"{log_tail(os.path.join(directory, 'monitor.log'))}"
    )


def launch(
    directory: str,
    task: dict[str, Any],
    timeout: float = 30.0,
    zygote: MonitorZygote | None = None,
) -> int:
    """Start the monitor of the container in ``directory``; return its pid once the
    container is created (not started) and the socket listens.

    Writes ``directory/monitor.json`` (``task`` and the ready pipe's fd), runs
    ``python -m moorage.engine.monitor directory`` in a new session (it outlives
    us; its output is appended to ``directory/monitor.log``). A refusal raises the
    MoorageError for its text; a monitor that dies or hangs first, :class:`Unavailable`.

    With ``zygote`` (``engine.monitor_zygote.MonitorZygote``) the monitor is a fork
    of that warm process instead, with the same files and the same answers; when the
    zygote cannot take the request (it cannot start, or it died: it is started again
    next time), the monitor is started as above.
    """
    if zygote is not None:
        pid = zygote.launch(directory, task, timeout)
        if pid is not None:
            return pid
    log_path = os.path.join(directory, "monitor.log")
    ready_r, ready_w = os.pipe()
    try:
        write_task(directory, task, ready_w)
        with open(log_path, "ab") as log:
            proc = _Detached(
                [sys.executable, "-m", "moorage.engine.monitor", directory],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(ready_w,),
                start_new_session=True,
                cwd="/",
            )
    except OSError as exc:
        os.close(ready_r)
        raise Unavailable(
            f"container monitor in {directory}: cannot start: {exc.strerror or exc}"
        ) from exc
    finally:
        os.close(ready_w)
    try:
        return await_ready(proc, ready_r, directory, timeout)
    finally:
        os.close(ready_r)
