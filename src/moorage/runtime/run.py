"""``run``: create and start a container, then (unless detached) wait for it and delete it.

In the foreground the caller is made a child subreaper, so the container's init
becomes its child once the stage process exits: its exit status is then ours to
collect. Signals sent to the caller are forwarded to the init. When the process
wants a terminal and no console socket was given, the caller takes the pty master
itself and copies between it and its own stdio, as ``runc run`` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import termios
import threading
import tty as pytty
from collections.abc import Iterator

from moorage.oci.runtime_spec import load_spec
from moorage.runtime.create import CreateOptions, create
from moorage.runtime.delete import delete
from moorage.runtime.start import start
from moorage.sys import libc, tty

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def become_subreaper(on: bool = True) -> None:
    """Adopt orphaned descendants (containers' inits) so their exit statuses reach us.

    A subreaper must reap what it adopts: a zombie left unreaped keeps its pid
    namespace, and so the container, from ever finishing.
    """
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def wait_child(pid: int) -> int:
    """Wait for our child ``pid`` while forwarding signals to it; return its exit code."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            got, status = os.waitpid(pid, 0)
            if got == pid:
                return exit_code(status)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(root: str, container_id: str, opts: CreateOptions, detach: bool = False) -> int:
    become_subreaper()
    spec = load_spec(opts.bundle)
    wants_tty = bool(spec.process and spec.process.terminal)
    ours: socket.socket | None = None
    if wants_tty and opts.console_socket is None and not detach:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        opts = opts._replace(console_sock=theirs)
    try:
        record = create(root, container_id, opts)
    finally:
        if opts.console_sock is not None:
            opts.console_sock.close()
    master = None
    if ours is not None:
        _, fds, _, _ = socket.recv_fds(ours, 1024, 1)
        ours.close()
        master = fds[0]
    try:
        start(root, container_id)
        if detach:
            return 0
        if master is not None:
            with _terminal_bridge(master):
                return wait_child(record.pid)
        return wait_child(record.pid)
    finally:
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)
        if not detach:
            delete(root, container_id, force=True)


@contextlib.contextmanager
def _terminal_bridge(master: int) -> Iterator[None]:
    """Copy stdin to the pty and the pty to stdout; raw mode while it lasts."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        pytty.setraw(stdin)
        rows, cols = tty.get_winsize(stdin)
        tty.set_winsize(master, rows, cols)

    def pump(src: int, dst: int) -> None:
        with contextlib.suppress(OSError):
            while data := os.read(src, 65536):
                os.write(dst, data)

    threading.Thread(target=pump, args=(stdin, master), daemon=True).start()
    out = threading.Thread(target=pump, args=(master, stdout), daemon=True)
    out.start()
    try:
        yield
        out.join(timeout=2)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
