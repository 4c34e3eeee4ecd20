"""Being attached to a container: the hijacked stream, the terminal, signals, exit.

What ``run``, ``start -a``, ``attach`` and ``exec`` share, after the docker CLI's
hijackedIOStreamer:

- output is copied to stdout (raw with a TTY, demultiplexed to stdout and stderr
  without) until the daemon ends the stream; input goes up from a thread and
  ends with a half-close, the container's end of input;
- with a TTY and a terminal on stdin, the terminal is raw while attached and the
  detach keys (ctrl-p ctrl-q) leave the container running;
- the TTY follows the terminal's size (SIGWINCH), and signals the CLI receives
  are passed on to the container (``--sig-proxy``);
- the exit status comes from a ``wait`` request sent before the container
  starts, so that no exit can be missed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, BinaryIO

from moorage.api.client import Client, HijackedConnection
from moorage.api.streams_client import Demultiplexer
from moorage.errors import MoorageError

DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q
# What the CLI passes on to the container; CHLD, PIPE, URG and WINCH stay here.
PROXIED_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM")
_CHUNK = 32 * 1024


class EscapeDetector:
    """Watches keyboard input for the detach sequence, holding back a partial match."""

    def __init__(self, keys: bytes = DETACH_KEYS) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the whole sequence was typed)."""
        out = bytearray()
        for byte in data:
            candidate = self._held + bytes([byte])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    self._held = b""
                    return bytes(out), True
                self._held = candidate
                continue
            out += candidate  # not the sequence after all: what was held goes too
            self._held = b""
        return bytes(out), False


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode (keys reach the container as typed)."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(stream: Any) -> tuple[int, int] | None:
    """(rows, columns) of the terminal behind ``stream``; None if it is not one."""
    try:
        if not stream.isatty():
            return None
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return size.lines, size.columns


def relay(
    conn: HijackedConnection,
    *,
    tty: bool,
    stdin: BinaryIO | None,
    stdout: BinaryIO,
    stderr: BinaryIO,
) -> bool:
    """Copy the stream both ways until its output ends; True if the user detached."""
    raw = tty and stdin is not None and _isatty(stdin)
    detached = threading.Event()
    with raw_terminal(stdin.fileno()) if raw and stdin is not None else _nothing():
        if stdin is not None:
            thread = threading.Thread(
                target=_pump_input,
                args=(conn, stdin, EscapeDetector() if raw else None, detached),
                name="moor-stdin",
                daemon=True,  # a read on the terminal cannot be interrupted; exit leaves it
            )
            thread.start()
        _pump_output(conn, tty, stdout, stderr)
    return detached.is_set()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _pump_output(conn: HijackedConnection, tty: bool, stdout: BinaryIO, stderr: BinaryIO) -> None:
    demux = None if tty else Demultiplexer(stdout, stderr)
    try:
        while data := conn.read(_CHUNK):
            if demux is None:
                stdout.write(data)
                stdout.flush()
            else:
                demux.feed(data)
    except OSError:
        return  # the connection was shut down (detach) or reset: the stream is over
    if demux is not None:
        demux.close()


def _pump_input(
    conn: HijackedConnection,
    stdin: BinaryIO,
    escape: EscapeDetector | None,
    detached: threading.Event,
) -> None:
    fd = stdin.fileno()
    try:
        while data := os.read(fd, _CHUNK):
            if escape is not None:
                data, detach = escape.feed(data)
                if detach:
                    detached.set()
                    _shutdown(conn)
                    return
            if data:
                conn.send(data)
    except OSError:
        return  # the stream is gone: nothing more to send
    conn.close_write()


def _shutdown(conn: HijackedConnection) -> None:
    import socket

    with contextlib.suppress(OSError):  # already closed
        conn.sock.shutdown(socket.SHUT_RDWR)


class ExitWaiter:
    """``POST .../wait`` sent now, answered at the exit; read in a thread.

    dockerd sends the response's headers once the wait is in place, so
    :meth:`registered` tells when it is safe to start the container.
    """

    def __init__(self, client: Client, path: str, condition: str | None = None) -> None:
        params = {"condition": condition} if condition else None
        self._pending = client.begin("POST", path, params=params)
        self._registered = threading.Event()
        self._done = threading.Event()
        self.status: int = 0
        self.error: str | None = None
        threading.Thread(target=self._read, name="moor-wait", daemon=True).start()

    def _read(self) -> None:
        try:
            response = self._pending.response()
            self._registered.set()
            result = response.json() or {}
            self.status = int(result.get("StatusCode", 0))
            error = result.get("Error") or {}
            if error.get("Message"):
                self.error = str(error["Message"])
        except (MoorageError, OSError, ValueError) as exc:
            self.error = str(exc)
        finally:
            self._registered.set()
            self._done.set()

    def registered(self, timeout: float) -> None:
        """Give the daemon up to ``timeout`` seconds to confirm the wait."""
        self._registered.wait(timeout)

    def result(self, timeout: float | None = None) -> int | None:
        """The exit status (125 when the wait failed); None if not there in time."""
        if not self._done.wait(timeout):
            return None
        if self.error is not None:
            print(f"moor: error waiting for container: {self.error}", file=sys.stderr)
            return 125
        return self.status

    def close(self) -> None:
        self._pending.close()


class ResizeMonitor:
    """Keeps a container's (or exec's) TTY the size of the local terminal."""

    def __init__(self, resize: Callable[[int, int], None], terminal: Any) -> None:
        self._resize = resize
        self._terminal = terminal
        self._previous: Any = None

    def start(self) -> ResizeMonitor:
        self._send()
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGWINCH, self._on_winch)
        return self

    def _on_winch(self, signum: int, frame: FrameType | None) -> None:
        # The request runs in a thread: a signal handler must not block the main one.
        threading.Thread(target=self._send, daemon=True).start()

    def _send(self) -> None:
        size = terminal_size(self._terminal)
        if size is None or size == (0, 0):
            return
        # The process may have ended already; then there is nothing to resize.
        with contextlib.suppress(MoorageError, OSError):
            self._resize(*size)

    def stop(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGWINCH, self._previous)
            self._previous = None


class SignalProxy:
    """Passes the signals the CLI receives to the container (docker's --sig-proxy)."""

    def __init__(self, kill: Callable[[str], None]) -> None:
        self._kill = kill
        self._previous: dict[signal.Signals, Any] = {}

    def start(self) -> SignalProxy:
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in PROXIED_SIGNALS:
            sig = signal.Signals[name]
            self._previous[sig] = signal.signal(sig, self._forward)
        return self

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        threading.Thread(target=self._send, args=(name,), daemon=True).start()

    def _send(self, name: str) -> None:
        # The container may be gone; docker ignores this too.
        with contextlib.suppress(MoorageError, OSError):
            self._kill(name)

    def stop(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
