"""The per-container monitor: the container's parent, its log writer and its witness.

``python -m moorage.engine.monitor DIR`` runs one container described by
``DIR/monitor.json`` (:class:`Task`) and stays its parent (a child subreaper) until
it exits. ``engine.monitor_client.launch`` starts it, so or (the daemon's way) as
a fork of ``engine.monitor_zygote``, which calls :func:`serve` in the fork with the
ready pipe passed in and ``DIR`` as its working directory. A client talks to it
with ``engine.monitor_client.MonitorClient``.

1. It creates the container with the runtime's in-process API: stdout and stderr
   on pipes it holds, or with ``tty`` a pty whose master comes back through a
   console socketpair; stdin a pipe whose write end it keeps (``open_stdin``, or
   the pty), else /dev/null. A monitor forked by the zygote runs from the sealed
   copy of the interpreter: it creates the container in a throwaway fork of itself
   (made while it is still single-threaded), in which the runtime forks the
   container's stage from that process (``runtime.spawn``'s fork mode) and which
   reports the init's pid and exits; what create allocates and touches dies with
   it, instead of staying in the long-lived monitor (copied from the zygote's
   pages), and the init, its parents gone, is the monitor's child (a subreaper's).
   Otherwise, and for every exec, the stage is a fresh interpreter. It
   listens on its control socket (mode 0600), records ``state.json`` (created,
   pid) and writes ``{"ok": true, "pid": N, "monitor_pid": M}`` to the ready pipe
   (``ready_fd``); on failure ``{"ok": false, "error": ...}``, an exited
   state.json (exit code 127 and the error) and it exits.
2. It does not start the container by itself: a client sends ``start`` (after
   attaching, so no output is lost); it then records ``state.json`` (running, pid,
   started_at).
3. It copies what the container prints into the json-file log (``engine.logs``)
   and to attached clients; stdin, resizes and execs come in on the socket.
4. When the init exits (exit code, or 128+N when signalled) it drains the output
   (if a process outside the init's pid namespace still holds it after
   ``DRAIN_GRACE``, the cgroup's processes are killed), ends the attach streams,
   reads the cgroup's OOM count, deletes the runtime container, unmounts
   ``rootfs_mount`` (also after a failed create), records ``state.json`` (exited,
   exit code, OOMKilled, finished_at; each write atomic), removes the socket and
   exits.

It depends on nothing of the daemon, so a daemon that dies (kill -9) or restarts
loses no container, no log line and no exit code: a new daemon reads state.json.

The control socket: one request per connection, a JSON line; the reply is a JSON
line ``{"ok": true, ...}`` or ``{"ok": false, "error": text, "kind": class name}``
(``kind`` is the MoorageError class when there is one).

- ``{"op": "state"}`` -> ``status`` (created, running, exited), ``pid`` and, once
  exited, ``exit_code``.
- ``{"op": "start"}`` -> ``pid``; a second start is a Conflict.
- ``{"op": "resize", "height": H, "width": W[, "exec_id": E]}``: the pty size of the
  container's process, or of exec E's.
- ``{"op": "attach", "stdin": b, "stdout": b, "stderr": b}``: after the reply the
  connection carries output produced from then on, raw with a tty, else in Docker's
  multiplexed frames (``logs.frame``) of the streams asked for; the client's bytes
  go to the container's stdin (with ``stdin`` and ``open_stdin``), and its
  ``shutdown(SHUT_WR)`` ends them (with ``stdin_once``, and no tty, that closes the
  container's stdin, as Docker does; with a tty Docker leaves the terminal open, and
  so does the monitor). The monitor closes the connection once the output has ended
  and been sent (at once for an attach after that). A client whose unsent output
  passes ``CLIENT_BUFFER`` is dropped: a slow reader never blocks the container or
  the log.
- ``{"op": "exec", "process": {...}, "exec_id": E}``: the process (OCI process
  object) is started in the container. Without a terminal the request carries three
  descriptors (stdin, stdout, stderr) as SCM_RIGHTS; with one it carries none and
  the reply carries the pty master. The reply has ``pid``; the connection then
  stays open until ``{"exit_code": N}`` is sent when the process exits.

Threads: the main one waits for the init; a reaper collects every child (the
init, exec'd processes, orphans; see :class:`_Reaper`; ``subprocess`` is kept from
reaping behind its back); one loop (``selectors``) moves output, stdin and attach
streams; one accepts connections and one short thread serves each request (an
exec's waits for its process). At most ``MAX_PENDING_REQUESTS`` requests are read
at once, each within ``REQUEST_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn, TypeGuard

from moorage.engine.logs import JsonFileWriter, frame, parse_log_opts
from moorage.errors import Conflict, FailedPrecondition, InvalidArgument, MoorageError, NotFound

if TYPE_CHECKING:
    from moorage.runtime.container import ContainerRecord

#: The most unsent output an attach client may have before it is dropped.
CLIENT_BUFFER = 1 << 20
#: The most client stdin held for the container before clients stop being read.
STDIN_BUFFER = 1 << 16
#: The longest request line, and how long a client has to send it.
MAX_REQUEST = 1 << 20
REQUEST_TIMEOUT = 10.0
#: Descriptors a request may carry (an exec needs 3).
MAX_FDS = 4
#: Requests being read at once; more connections are closed at once.
MAX_PENDING_REQUESTS = 64
#: After the init exits: how long the output may take to end before the cgroup's
#: processes are killed, how long attach clients get to take the last output, and
#: how long exec connections get to be told their exit codes.
DRAIN_GRACE = 5.0
FLUSH_GRACE = 5.0
EXEC_GRACE = 5.0

_CHUNK = 65536
_STREAM_IDS = {"stdout": 1, "stderr": 2}
Stream = Literal["stdout", "stderr"]


class Task(NamedTuple):
    """``monitor.json``: what to run and where to report."""

    id: str
    bundle: str
    runtime_root: str
    log_path: str
    log_opts: dict[str, str]
    socket: str
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    rootfs_mount: str | None = None
    ready_fd: int | None = None

    @classmethod
    def load(cls, directory: str) -> Task:
        return cls.from_dict(_load_task_json(directory), os.path.join(directory, "monitor.json"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "monitor task") -> Task:
        try:
            strings = {k: data[k] for k in ("id", "bundle", "runtime_root", "log_path", "socket")}
            for key, value in strings.items():
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{key}: must be a non-empty string")
            if not os.path.isabs(strings["socket"]):
                raise ValueError("socket: must be an absolute path")
            flags = {k: data.get(k, False) for k in ("tty", "open_stdin", "stdin_once")}
            for key, value in flags.items():
                if not isinstance(value, bool):
                    raise ValueError(f"{key}: must be a boolean")
            mount = data.get("rootfs_mount")
            if mount is not None and (not isinstance(mount, str) or not os.path.isabs(mount)):
                raise ValueError("rootfs_mount: must be an absolute path or null")
            log_opts = data.get("log_opts")
            log_opts = {} if log_opts is None else log_opts
            if not isinstance(log_opts, dict):
                raise ValueError("log_opts: must be an object")
            return cls(
                log_opts={str(k): str(v) for k, v in log_opts.items()},
                rootfs_mount=mount,
                ready_fd=_ready_fd_of(data),
                **strings,
                **flags,
            )
        except (KeyError, ValueError) as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc


def _load_task_json(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, "monitor.json")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"monitor task {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"monitor task {path}: not a JSON object")
    return data


def _ready_fd_of(data: dict[str, Any]) -> int | None:
    fd = data.get("ready_fd")
    return fd if type(fd) is int and fd >= 0 else None


def now_rfc3339() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9:09d}Z"


def write_state(directory: str, state: dict[str, Any]) -> None:
    """Crash-safe: temporary name, fsync, rename. Readers see the old or the new."""
    path = os.path.join(directory, "state.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def read_state(directory: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, "state.json"), "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MoorageError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror.lower()}"
    return f"{type(exc).__name__}: {exc}"


def _error_reply(exc: BaseException) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": False, "error": _describe(exc)}
    if isinstance(exc, MoorageError):
        reply["kind"] = type(exc).__name__
    return reply


def _log(message: str) -> None:
    """A line for monitor.log (our stderr), where nothing else would see it."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"moor monitor: {message}\n")
        sys.stderr.flush()


# -- children ----------------------------------------------------------------------


class _Exit:
    """The exit code of one child, once the reaper has it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.code = 0

    def set(self, code: int) -> None:
        self.code = code
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def is_set(self) -> bool:
        return self._event.is_set()


def _leave_children_to_the_reaper() -> None:
    """Stop ``subprocess`` from reaping children it has dropped; the reaper does.

    Without a pid namespace the runtime's stage process is itself the init or the
    exec'd process, and the runtime drops its ``Popen`` while it runs. A dropped
    ``Popen`` polls its process (``__del__``) and is polled again by every later
    ``Popen()``: either may reap it and steal its exit status from the reaper. In the
    monitor every child is the reaper's, so that polling is switched off.
    """
    import subprocess

    def dropped(self: subprocess.Popen[Any], *args: object, **kwargs: object) -> None:
        return

    setattr(subprocess.Popen, "__del__", dropped)  # noqa: B010 - mypy forbids assigning a method


class _Reaper:
    """The one thread that waits for children, so that no exit status is stolen.

    A subreaper inherits the init and every exec'd process, and must reap orphans it
    never heard of. It peeks at an exited child (``waitid(WNOWAIT)``) and reaps it
    only while holding :meth:`children`, which every runtime call that makes or waits
    for children of its own (create's and exec's stage processes, hooks) holds: so a
    ``subprocess`` inside the runtime always gets its own child's status, and an
    exec'd process that exits at once is reaped only after :meth:`expect` named it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, _Exit] = {}
        self._more = threading.Event()

    @contextlib.contextmanager
    def children(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            finally:
                self._more.set()

    def expect(self, pid: int) -> _Exit:
        """Name a child whose exit is wanted. Inside :meth:`children` (or before start)."""
        done = _Exit()
        self._waiters[pid] = done
        return done

    def start(self) -> None:
        threading.Thread(target=self._run, name="reaper", daemon=True).start()

    def _run(self) -> None:
        from moorage.runtime.run import exit_code

        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                # No children at all: wait until a runtime call may have made some.
                self._more.wait()
                self._more.clear()
                continue
            if info is None:
                continue
            with self._lock:
                try:
                    pid, status = os.waitpid(info.si_pid, os.WNOHANG)
                except ChildProcessError:
                    continue  # reaped meanwhile by the runtime call that made it
                waiter = self._waiters.pop(pid, None) if pid else None
            if waiter is not None:
                waiter.set(exit_code(status))


# -- streams -----------------------------------------------------------------------


class _Client:
    """An attach connection as the I/O loop sees it."""

    __slots__ = (
        "active",
        "closed",
        "fd",
        "feeds",
        "out",
        "overflow",
        "reading",
        "sock",
        "stdin",
        "streams",
    )

    def __init__(self, sock: socket.socket, streams: frozenset[str], stdin: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.streams = streams
        self.stdin = stdin  # asked for stdin
        self.feeds = False  # its bytes go to the container's stdin now
        self.out = bytearray()
        self.reading = True
        self.active = False  # its reply is sent: the loop owns the socket
        self.overflow = False
        self.closed = False


_Callback = Callable[[int], None]


class _Streams:
    """The I/O loop: container output to the log and to attach clients, client stdin
    to the container. One thread, non-blocking descriptors, bounded buffers."""

    def __init__(
        self,
        writer: JsonFileWriter,
        *,
        tty: bool,
        sources: dict[int, Stream],
        stdin_fd: int | None,
        stdin_once: bool,
    ) -> None:
        self._writer = writer
        self._tty = tty
        self._sources = dict(sources)
        self._stdin_fd = stdin_fd
        self._stdin_once = stdin_once and not tty
        self._stdin_buf = bytearray()
        self._stdin_eof = False
        self._stdin_paused = False
        self._log_failed = False
        self._sel = selectors.DefaultSelector()
        self._watched: dict[int, int] = {}
        self._lock = threading.Lock()  # guards _clients, _new, _done, _finishing
        self._clients: list[_Client] = []
        self._new: list[tuple[_Client, bytes]] = []
        self._done = False
        self._finishing = False
        self._aborting = False
        self._closing_at: float | None = None
        self.drained = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, *self._sources):
            os.set_blocking(fd, False)
        if stdin_fd is not None:
            os.set_blocking(stdin_fd, False)
        self._watch(self._wake_r, selectors.EVENT_READ, self._on_wake)
        for fd in self._sources:
            self._watch(fd, selectors.EVENT_READ, self._source_callback(fd))
        if not self._sources:
            self.drained.set()
        self._thread = threading.Thread(target=self._run, name="streams", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    # -- called from other threads --

    def attach(
        self, sock: socket.socket, streams: frozenset[str], stdin: bool, rest: bytes
    ) -> bool:
        """Send the reply and hand ``sock`` to the loop; False when the output has
        already ended (the caller closes ``sock``: the stream is empty)."""
        client = _Client(sock, streams, stdin)
        with self._lock:
            done = self._done
            if not done:
                # Listed before the reply: output from now on is kept for it.
                self._clients.append(client)
        if done:
            _send_line(sock, {"ok": True})
            return False
        try:
            _send_line(sock, {"ok": True})
        except OSError:
            with self._lock, contextlib.suppress(ValueError):
                self._clients.remove(client)
            raise
        with self._lock:
            if self._done:
                with contextlib.suppress(ValueError):
                    self._clients.remove(client)
                return False
            self._new.append((client, rest))
        self._wake()
        return True

    def finish(self) -> None:
        """The init has exited: end the streams once the output has."""
        with self._lock:
            self._finishing = True
        self._wake()

    def abort(self) -> None:
        """Stop waiting for the output to end (something still holds it open)."""
        with self._lock:
            self._finishing = self._aborting = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # -- the loop --

    def _run(self) -> None:
        while True:
            timeout = None
            if self._closing_at is not None:
                timeout = max(0.0, self._closing_at - time.monotonic())
            for key, mask in self._sel.select(timeout):
                callback: _Callback = key.data
                try:
                    callback(mask)
                except Exception as exc:  # noqa: BLE001 - the loop must outlive any one event
                    _log(f"streams: {_describe(exc)}")
            if self._closing_at is None:
                with self._lock:
                    finishing, aborting = self._finishing, self._aborting
                if aborting:
                    for fd in list(self._sources):
                        self._close_source(fd)
                if finishing and not self._sources:
                    self._start_closing()
            if self._closing_at is not None and (
                time.monotonic() >= self._closing_at or not self._has_clients()
            ):
                break
        with self._lock:
            self._done = True
            new, self._new = self._new, []
        for client, _ in new:
            client.active = True
        for client in self._active_clients() + [c for c, _ in new]:
            self._drop(client)
        if self._stdin_fd is not None:
            self._close_stdin()

    def _has_clients(self) -> bool:
        """Any client listed: active, queued, or still being sent its reply."""
        with self._lock:
            return bool(self._clients or self._new)

    def _active_clients(self) -> list[_Client]:
        with self._lock:
            return [c for c in self._clients if c.active]

    def _start_closing(self) -> None:
        self._closing_at = time.monotonic() + FLUSH_GRACE
        for client in self._active_clients():
            if not client.out:
                self._drop(client)

    def _watch(self, fd: int, events: int, callback: _Callback | None = None) -> None:
        current = self._watched.get(fd)
        if not events:
            if current is not None:
                self._sel.unregister(fd)
                del self._watched[fd]
        elif current is None:
            self._sel.register(fd, events, callback)
            self._watched[fd] = events
        elif current != events:
            self._sel.modify(fd, events, callback)
            self._watched[fd] = events

    def _on_wake(self, _mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        with self._lock:
            new, self._new = self._new, []
        for client, rest in new:
            client.active = True
            client.sock.setblocking(False)
            client.feeds = client.stdin and self._stdin_fd is not None and not self._stdin_eof
            if client.overflow or (self._closing_at is not None and not client.out):
                self._drop(client)
                continue
            if rest:
                self._take_input(client, rest)
            self._update_client(client)

    # output

    def _source_callback(self, fd: int) -> _Callback:
        return lambda _mask: self._on_output(fd)

    def _on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the pty's last slave is closed, its output has ended
        if not data:
            self._close_source(fd)
            return
        stream = self._sources[fd]
        try:
            self._writer.write(stream, data)
        except OSError as exc:  # a full disk loses log lines, not the container
            if not self._log_failed:
                _log(f"log {self._writer.path}: {_describe(exc)}")
            self._log_failed = True
        chunk = data if self._tty else frame(_STREAM_IDS[stream], data)
        with self._lock:
            clients = [c for c in self._clients if stream in c.streams and not c.overflow]
        for client in clients:
            if client.closed:
                continue
            if len(client.out) + len(chunk) > CLIENT_BUFFER:
                # Too slow a reader: the container must not wait for it.
                client.overflow = True
                client.out.clear()
                if client.active:
                    _log("dropping an attach client that does not keep up")
                    self._drop(client)
                continue
            client.out += chunk
            if client.active:
                self._update_client(client)

    def _close_source(self, fd: int) -> None:
        self._watch(fd, 0)
        del self._sources[fd]
        if not self._tty:
            os.close(fd)  # the pty master stays open for resizes until the monitor exits
        if not self._sources:
            self.drained.set()

    # clients

    def _update_client(self, client: _Client) -> None:
        if client.closed:
            return
        events = 0
        if client.reading and not (client.feeds and self._stdin_paused):
            events |= selectors.EVENT_READ
        if client.out:
            events |= selectors.EVENT_WRITE
        self._watch(client.fd, events, lambda mask: self._on_client(client, mask))

    def _on_client(self, client: _Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._send_to(client)
        if not client.closed and mask & selectors.EVENT_READ:
            self._recv_from(client)
        self._update_client(client)

    def _send_to(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        del client.out[:sent]
        if not client.out and self._closing_at is not None:
            self._drop(client)

    def _recv_from(self, client: _Client) -> None:
        try:
            data = client.sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        if not data:
            client.reading = False  # shutdown(SHUT_WR): no more stdin from this one
            self._stdin_done(client)
            return
        self._take_input(client, data)

    def _take_input(self, client: _Client, data: bytes) -> None:
        if client.feeds and self._stdin_fd is not None:
            self._stdin_buf += data
            self._flush_stdin()
        # else: nobody asked for it; read and dropped so a chatty client cannot jam

    def _stdin_done(self, client: _Client) -> None:
        if not client.feeds:
            return
        client.feeds = False
        if self._stdin_once:
            self._stdin_eof = True
            self._flush_stdin()

    def _drop(self, client: _Client) -> None:
        if client.closed:
            return
        client.closed = True
        self._watch(client.fd, 0)
        with self._lock, contextlib.suppress(ValueError):
            self._clients.remove(client)
        # Unread input would turn the peer's end of stream into ECONNRESET.
        with contextlib.suppress(OSError):
            client.sock.setblocking(False)
            for _ in range(16):
                if not client.sock.recv(_CHUNK):
                    break
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)
        client.sock.close()
        self._stdin_done(client)

    # stdin

    def _flush_stdin(self) -> None:
        fd = self._stdin_fd
        if fd is None:
            self._stdin_buf.clear()
            return
        if self._stdin_buf:
            try:
                written = os.write(fd, self._stdin_buf)
            except BlockingIOError:
                written = 0
            except OSError:  # EPIPE: nothing reads the container's stdin any more
                self._close_stdin()
                return
            del self._stdin_buf[:written]
        if not self._stdin_buf and self._stdin_eof:
            self._close_stdin()
            return
        self._watch(fd, selectors.EVENT_WRITE if self._stdin_buf else 0, self._on_stdin)
        paused = len(self._stdin_buf) >= STDIN_BUFFER
        if paused != self._stdin_paused:
            self._stdin_paused = paused
            for client in self._active_clients():
                if client.feeds:
                    self._update_client(client)

    def _on_stdin(self, _mask: int) -> None:
        self._flush_stdin()

    def _close_stdin(self) -> None:
        fd = self._stdin_fd
        if fd is None:
            return
        self._watch(fd, 0)
        os.close(fd)
        self._stdin_fd = None
        self._stdin_buf.clear()
        self._stdin_paused = False
        for client in self._active_clients():
            client.feeds = False
            self._update_client(client)


# -- the socket --------------------------------------------------------------------


def _send_line(sock: socket.socket, obj: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def _read_request(conn: socket.socket, fds: list[int]) -> tuple[dict[str, Any], bytes]:
    """One request line (and the bytes after it); descriptors that came go to ``fds``."""
    buf = bytearray()
    while True:
        try:
            data, got, flags, _ = socket.recv_fds(conn, _CHUNK, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        except TimeoutError:
            raise InvalidArgument(f"no request within {REQUEST_TIMEOUT:g}s") from None
        fds.extend(got)
        if flags & socket.MSG_CTRUNC:
            raise InvalidArgument(f"too many descriptors (at most {MAX_FDS})")
        if not data:
            raise InvalidArgument("connection closed before a complete request")
        buf += data
        end = buf.find(b"\n")
        if end >= 0:
            break
        if len(buf) > MAX_REQUEST:
            raise InvalidArgument(f"request longer than {MAX_REQUEST} bytes")
    try:
        request = json.loads(bytes(buf[:end]))
    except ValueError as exc:
        raise InvalidArgument(f"bad request: {exc}") from None
    if not isinstance(request, dict):
        raise InvalidArgument("bad request: not a JSON object")
    return request, bytes(buf[end + 1 :])


def _listen(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket of an earlier monitor
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"control socket {path}: {_describe(exc)}") from exc
    return sock


def _recv_master(sock: socket.socket) -> int | None:
    """The pty master the runtime sent on a console socketpair, or None."""
    try:
        _, fds, _, _ = socket.recv_fds(sock, 4096, 1, socket.MSG_CMSG_CLOEXEC)
    except (BlockingIOError, TimeoutError):
        return None
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else None


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _is_size(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= 0xFFFF


def _unmount(path: str) -> None:
    """Detach every mount stacked on ``path``; not a mount point is not an error."""
    from moorage.sys import libc

    for _ in range(16):
        try:
            libc.umount2(path, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise FailedPrecondition(f"unmount {path}: {_describe(exc)}") from exc
    raise FailedPrecondition(f"unmount {path}: too many stacked mounts")


# -- the monitor -------------------------------------------------------------------


class _Monitor:
    def __init__(self, directory: str, task: Task) -> None:
        self.directory = directory
        self.task = task
        self.reaper = _Reaper()
        self.pid = 0
        self.status = "created"
        self.exit_code: int | None = None
        self._status_lock = threading.Lock()  # start, status and state.json writes
        self.master: int | None = None
        self._execs: dict[str, int | None] = {}  # exec id -> its pty master
        self._exec_lock = threading.Condition()
        self._requests = threading.BoundedSemaphore(MAX_PENDING_REQUESTS)

    # -- setup --

    def setup(self) -> int:
        """Create the container, listen, start the threads; return the init's pid."""
        from moorage.runtime import api

        task = self.task
        opts = parse_log_opts(task.log_opts)
        with contextlib.ExitStack() as undo:
            self.writer = JsonFileWriter(
                task.log_path, max_size=opts.max_size, max_file=opts.max_file
            )
            undo.callback(self.writer.close)
            self.listener = _listen(task.socket)
            undo.callback(self._remove_socket)
            undo.callback(self.listener.close)
            # Descriptors the container gets: ours to close once create is done.
            theirs: list[int] = []
            kept: list[int] = []  # and the ones we keep, closed only on failure
            undo.callback(_close_all, kept)
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            theirs.append(devnull)
            console: socket.socket | None = None
            console_theirs: socket.socket | None = None
            sources: dict[int, Stream] = {}
            stdin_fd: int | None = None
            if task.tty:
                console, console_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                undo.callback(console.close)
                create_opts = api.CreateOptions(
                    bundle=task.bundle,
                    stdin=devnull,
                    stdout=devnull,
                    stderr=devnull,
                    console_sock=console_theirs,
                )
            else:
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                kept += [out_r, err_r]
                theirs += [out_w, err_w]
                sources = {out_r: "stdout", err_r: "stderr"}
                stdin = devnull
                if task.open_stdin:
                    stdin, stdin_fd = os.pipe()
                    theirs.append(stdin)
                    kept.append(stdin_fd)
                create_opts = api.CreateOptions(
                    bundle=task.bundle, stdin=stdin, stdout=out_w, stderr=err_w
                )
            try:
                record = _create(task, create_opts)
            finally:
                for fd in theirs:
                    os.close(fd)
                if console_theirs is not None:
                    console_theirs.close()
            undo.callback(self._delete_created)
            self.record: ContainerRecord = record
            self.pid = record.pid
            if console is not None:
                # Sent before the init reported ready, so it is there now or never.
                console.setblocking(False)
                master = _recv_master(console)
                if master is None:
                    raise InvalidArgument(
                        "monitor task: tty is set but the bundle's process.terminal is not"
                    )
                kept.append(master)
                self.master = master
                sources = {master: "stdout"}
                if task.open_stdin:
                    stdin_fd = os.dup(master)
                    kept.append(stdin_fd)
            self.init_exit = self.reaper.expect(record.pid)
            self.streams = _Streams(
                self.writer,
                tty=task.tty,
                sources=sources,
                stdin_fd=stdin_fd,
                stdin_once=task.stdin_once,
            )
            self._write_state({"status": "created", "pid": self.pid, "monitor_pid": os.getpid()})
            undo.pop_all()
        if console is not None:
            console.close()
        self.reaper.start()
        self.streams.start()
        threading.Thread(target=self._accept, name="accept", daemon=True).start()
        return record.pid

    def _delete_created(self) -> None:
        from moorage.runtime import api

        try:
            api.delete(self.task.runtime_root, self.task.id, force=True)
        except MoorageError as exc:  # the error that got us here is the one to report
            _log(f"delete: {exc}")

    def _remove_socket(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.task.socket)

    def _write_state(self, state: dict[str, Any]) -> None:
        write_state(self.directory, state)

    # -- the end --

    def wait(self) -> int:
        """Wait for the init, then tidy up and record its exit; return its exit code."""
        from moorage.runtime import api
        from moorage.runtime.cgroups.manager import new_manager

        task = self.task
        self.init_exit.wait()
        code = self.init_exit.code
        with self._status_lock:
            self.status = "exited"
            self.exit_code = code
        cgroup = new_manager(self.record.cgroups_path or None, task.id)
        self.streams.finish()
        if not self.streams.drained.wait(DRAIN_GRACE):
            # The pid namespace is gone, yet the output is held open (a process outside
            # it, e.g. with the host's pid namespace): end what is left of the cgroup.
            _log("output still open after the init exited: killing the cgroup's processes")
            with contextlib.suppress(MoorageError, OSError):
                cgroup.kill_all(signal.SIGKILL)
            if not self.streams.drained.wait(DRAIN_GRACE):
                self.streams.abort()
        self.streams.join()
        self.writer.flush_partial()
        with contextlib.suppress(OSError):
            self.writer.sync()
        self.writer.close()
        try:
            oom_killed = cgroup.oom_kill_count() > 0
        except MoorageError:
            oom_killed = False
        try:
            with self.reaper.children():
                api.delete(task.runtime_root, task.id, force=True)
        except MoorageError as exc:
            _log(f"delete: {exc}")
        with self._exec_lock:
            self._exec_lock.wait_for(lambda: not self._execs, timeout=EXEC_GRACE)
        if task.rootfs_mount:
            try:
                _unmount(task.rootfs_mount)
            except MoorageError as exc:
                _log(str(exc))
        with self._status_lock:
            self._write_state(
                {
                    "status": "exited",
                    "exit_code": code,
                    "oom_killed": oom_killed,
                    "finished_at": now_rfc3339(),
                }
            )
        self._remove_socket()
        return code

    # -- requests --

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.1)  # out of descriptors or memory: let some go
                continue
            if not self._requests.acquire(blocking=False):
                conn.close()
                continue
            try:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
            except RuntimeError:
                self._requests.release()
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        fds: list[int] = []
        keep = False
        try:
            try:
                conn.settimeout(REQUEST_TIMEOUT)
                request, rest = _read_request(conn, fds)
            finally:
                self._requests.release()
            keep = self._dispatch(conn, request, rest, fds)
        except Exception as exc:  # noqa: BLE001 - any request, however bad, gets an answer
            with contextlib.suppress(OSError):
                _send_line(conn, _error_reply(exc))
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if not keep:
                conn.close()

    def _dispatch(
        self, conn: socket.socket, request: dict[str, Any], rest: bytes, fds: list[int]
    ) -> bool:
        """Answer ``request``; True when the connection now belongs to the I/O loop."""
        op = request.get("op")
        if op != "exec" and fds:
            raise InvalidArgument(f"{op}: takes no descriptors")
        if op == "state":
            _send_line(conn, self._state())
        elif op == "start":
            _send_line(conn, {"ok": True, "pid": self._start()})
        elif op == "resize":
            self._resize(request)
            _send_line(conn, {"ok": True})
        elif op == "attach":
            return self._attach(conn, request, rest)
        elif op == "exec":
            self._exec(conn, request, fds)
        else:
            raise InvalidArgument(f"unknown op: {op!r}"[:200])
        return False

    def _state(self) -> dict[str, Any]:
        with self._status_lock:
            reply: dict[str, Any] = {"ok": True, "status": self.status, "pid": self.pid}
            if self.exit_code is not None:
                reply["exit_code"] = self.exit_code
        return reply

    def _start(self) -> int:
        from moorage.runtime import api

        with self._status_lock:
            if self.status != "created":
                raise Conflict(f"container {self.task.id} is already {self.status}")
            with self.reaper.children():
                api.start(self.task.runtime_root, self.task.id)
            self.status = "running"
            self._write_state(
                {
                    "status": "running",
                    "pid": self.pid,
                    "monitor_pid": os.getpid(),
                    "started_at": now_rfc3339(),
                }
            )
        return self.pid

    def _resize(self, request: dict[str, Any]) -> None:
        from moorage.sys import tty

        height, width = request.get("height"), request.get("width")
        if not (_is_size(height) and _is_size(width)):
            raise InvalidArgument("resize: height and width must be integers from 0 to 65535")
        exec_id = request.get("exec_id")
        if exec_id is not None:
            with self._exec_lock:
                if not isinstance(exec_id, str) or exec_id not in self._execs:
                    raise NotFound(f"no such exec: {exec_id}"[:200])
                master = self._execs[exec_id]
                if master is None:
                    raise FailedPrecondition(f"exec {exec_id} has no terminal")
                tty.set_winsize(master, height, width)
            return
        if self.master is None:
            raise FailedPrecondition(f"container {self.task.id} has no terminal")
        with self._status_lock:
            if self.status == "exited":
                raise Conflict(f"container {self.task.id} is not running")
            tty.set_winsize(self.master, height, width)

    def _attach(self, conn: socket.socket, request: dict[str, Any], rest: bytes) -> bool:
        flags = {k: request.get(k, False) for k in ("stdin", "stdout", "stderr")}
        if not all(isinstance(v, bool) for v in flags.values()):
            raise InvalidArgument("attach: stdin, stdout and stderr must be booleans")
        if self.task.tty:
            # One terminal: everything the process prints is on it.
            wanted = {"stdout"} if flags["stdout"] or flags["stderr"] else set()
        else:
            wanted = {s for s in ("stdout", "stderr") if flags[s]}
        stdin = flags["stdin"] and self.task.open_stdin
        conn.settimeout(REQUEST_TIMEOUT)
        return self.streams.attach(conn, frozenset(wanted), stdin, rest)

    def _exec(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        process, exec_id = request.get("process"), request.get("exec_id")
        if not isinstance(process, dict):
            raise InvalidArgument("exec: process must be an object")
        if not isinstance(exec_id, str) or not exec_id or len(exec_id) > 256:
            raise InvalidArgument("exec: exec_id must be a non-empty string")
        terminal = bool(process.get("terminal"))
        if terminal and fds:
            raise InvalidArgument("exec: a process with a terminal takes no descriptors")
        if not terminal and len(fds) != 3:
            raise InvalidArgument(
                f"exec: expected 3 descriptors (stdin, stdout, stderr), got {len(fds)}"
            )
        with self._exec_lock:
            if exec_id in self._execs:
                raise Conflict(f"exec {exec_id} is already running")
            self._execs[exec_id] = None
        try:
            stdio = list(fds)
            fds.clear()  # ours now: _exec_start closes them
            pid, done, master = self._exec_start(process, stdio, terminal)
            if master is not None:
                with self._exec_lock:
                    self._execs[exec_id] = master
            _send_line(conn, {"ok": True, "pid": pid}, [master] if master is not None else None)
            done.wait()
        finally:
            self._forget_exec(exec_id)
        # Forgotten first: a resize after the exit code is news of no such exec.
        conn.settimeout(REQUEST_TIMEOUT)
        with contextlib.suppress(OSError):
            _send_line(conn, {"exit_code": done.code})

    def _forget_exec(self, exec_id: str) -> None:
        with self._exec_lock:
            master = self._execs.pop(exec_id, None)
            if master is not None:
                os.close(master)
            self._exec_lock.notify_all()

    def _exec_start(
        self, process: dict[str, Any], stdio: list[int], terminal: bool
    ) -> tuple[int, _Exit, int | None]:
        from moorage.runtime import api

        task = self.task
        console: socket.socket | None = None
        theirs: socket.socket | None = None
        devnull: int | None = None
        try:
            if terminal:
                console, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                opts = api.ExecOptions(
                    process, console_sock=theirs, stdin=devnull, stdout=devnull, stderr=devnull
                )
            else:
                opts = api.ExecOptions(
                    process=process, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2]
                )
            with self.reaper.children():
                if self.status != "running":
                    raise Conflict(f"container {task.id} is not running")
                pid = api.exec_process(task.runtime_root, task.id, opts)
                done = self.reaper.expect(pid)
        finally:
            for fd in stdio + ([devnull] if devnull is not None else []):
                os.close(fd)
            if theirs is not None:
                theirs.close()
        master = None
        if console is not None:
            try:
                console.settimeout(REQUEST_TIMEOUT)
                master = _recv_master(console)
            finally:
                console.close()
            if master is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise FailedPrecondition("exec: the runtime sent no terminal")
        return pid, done, master


def _create(task: Task, opts: Any) -> ContainerRecord:
    """``api.create``; from the sealed copy of the interpreter (a monitor forked by
    ``engine.monitor_zygote``), in a throwaway fork of this process (see the module)."""
    from moorage.runtime import api
    from moorage.sys.sealed import running_sealed

    if not running_sealed():
        return api.create(task.runtime_root, task.id, opts)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    report_r, report_w = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(report_r)
        os.close(report_w)
        raise
    if pid == 0:
        os.close(report_r)
        _create_and_report(task, opts, report_w)
    os.close(report_w)
    try:
        data = b""
        while chunk := os.read(report_r, _CHUNK):
            data += chunk
    finally:
        os.close(report_r)
        os.waitpid(pid, 0)
    return _created(task, data)


def _create_and_report(task: Task, opts: Any, report_w: int) -> NoReturn:
    """The throwaway fork: create, with the stage forked from here (the runtime's fork
    mode: this process is single-threaded), report, exit."""
    import marshal

    from moorage.runtime import api, spawn

    try:
        spawn.fork_stages()
        record = api.create(task.runtime_root, task.id, opts)
        reply: dict[str, Any] = {
            "pid": record.pid,
            "pid_start": record.pid_start,
            "cgroups_path": record.cgroups_path,
        }
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the monitor
        kind = type(exc).__name__ if isinstance(exc, MoorageError) else ""
        reply = {"error": _describe(exc), "kind": kind}
    try:
        data = marshal.dumps(reply)
        while data:
            data = data[os.write(report_w, data) :]
    finally:
        os._exit(0)


def _created(task: Task, data: bytes) -> ContainerRecord:
    """The record the throwaway fork reported, or its error raised here."""
    import marshal

    from moorage import errors
    from moorage.runtime.container import ContainerRecord

    try:
        reply = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        # It died (killed?) without undoing what it had made: undo it here.
        from moorage.runtime import api

        with contextlib.suppress(MoorageError):
            api.delete(task.runtime_root, task.id, force=True)
        reply = {"error": f"container {task.id}: create ended without a word", "kind": ""}
    if "error" in reply:
        cls = getattr(errors, reply["kind"], None) if reply["kind"] else None
        if not (isinstance(cls, type) and issubclass(cls, MoorageError)):
            cls = FailedPrecondition
        raise cls(reply["error"])
    return ContainerRecord(
        id=task.id,
        bundle=task.bundle,
        rootfs="",
        created="",
        config={},
        pid=reply["pid"],
        pid_start=reply["pid_start"],
        cgroups_path=reply["cgroups_path"],
    )


class _Ready:
    """The launcher's pipe: one JSON line, then closed."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            try:
                os.set_inheritable(fd, False)  # never to the container
            except OSError:
                self.fd = None

    def send(self, message: dict[str, Any]) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, json.dumps(message).encode() + b"\n")
        except OSError as exc:  # the launcher is gone: the container goes on
            _log(f"ready pipe: {_describe(exc)}")
        finally:
            os.close(self.fd)
            self.fd = None


def run(directory: str, ready_fd: int | None = None) -> int:
    """Run the container of ``directory`` to its end; return its exit code (also recorded).

    ``ready_fd``, when given, is the ready pipe (else monitor.json's ``ready_fd``).
    For the monitor's own process only: it becomes a subreaper and takes over the
    reaping of every child (:func:`_leave_children_to_the_reaper`).
    """
    from moorage.runtime import api

    ready = _Ready(ready_fd)
    task: Task | None = None
    try:
        data = _load_task_json(directory)
        if ready_fd is None:
            ready = _Ready(_ready_fd_of(data))
        task = Task.from_dict(data, os.path.join(directory, "monitor.json"))
        api.become_subreaper()
        _leave_children_to_the_reaper()
        monitor = _Monitor(directory, task)
        pid = monitor.setup()
    except (MoorageError, OSError) as exc:
        message = _describe(exc)
        _log(message)
        if task is not None and task.rootfs_mount:
            try:
                _unmount(task.rootfs_mount)
            except MoorageError as unmount_error:
                _log(str(unmount_error))
        try:
            write_state(
                directory,
                {
                    "status": "exited",
                    "exit_code": 127,
                    "error": message,
                    "oom_killed": False,
                    "finished_at": now_rfc3339(),
                },
            )
        except OSError as state_error:
            _log(f"state.json: {_describe(state_error)}")
        ready.send(_error_reply(exc))
        return 127
    ready.send({"ok": True, "pid": pid, "monitor_pid": os.getpid()})
    return monitor.wait()


def _ignore(_signum: int, _frame: object) -> None:
    return


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m moorage.engine.monitor CONTAINER_DIR\n")
        sys.exit(2)
    serve(sys.argv[1])


def serve(directory: str, ready_fd: int | None = None) -> NoReturn:
    """Be the monitor of ``directory`` (see :func:`run`), then exit this process."""
    # A stop request reaches the container through the daemon (runtime kill), not us.
    # Caught rather than ignored: an ignored signal would stay ignored in the container.
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGHUP, _ignore)
    try:
        status = 0 if run(directory, ready_fd) >= 0 else 1
    except MoorageError as exc:
        sys.stderr.write(f"moor monitor: {exc}\n")
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Straight out: the accept, reaper and request threads are blocked in system calls.
    os._exit(status)


if __name__ == "__main__":
    main()
