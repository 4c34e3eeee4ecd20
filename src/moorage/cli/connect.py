"""Finding the daemon: -H, MOOR_HOST, or the default socket (started when absent)."""

from __future__ import annotations

import os
import sys
import time

import click

from moorage.api.client import Client
from moorage.api.hosts import DEFAULT_EXEC_ROOT, DEFAULT_HOST, socket_path_of
from moorage.errors import Unavailable

START_TIMEOUT = 30.0


def client(host: str | None) -> Client:
    """A client for the daemon at ``host``; on the default socket, start one if none answers."""
    explicit = host or os.environ.get("MOOR_HOST")
    c = Client(socket_path_of(explicit or DEFAULT_HOST))
    if explicit or c.ping():
        return c
    _start_daemon(c)
    return c


def _start_daemon(c: Client) -> None:
    os.makedirs(DEFAULT_EXEC_ROOT, mode=0o700, exist_ok=True)
    log_path = os.path.join(DEFAULT_EXEC_ROOT, "moor-daemon.log")
    with open(log_path, "ab") as log:
        import subprocess  # only to start a daemon: most calls find one

        proc = subprocess.Popen(
            [sys.executable, "-m", "moorage.cli.main", "daemon"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    click.echo(f"started moor daemon (pid {proc.pid}, log {log_path})", err=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not c.ping():
        if proc.poll() is not None:
            raise Unavailable(f"moor daemon exited with status {proc.returncode}: see {log_path}")
        if time.monotonic() > deadline:
            raise Unavailable(
                f"moor daemon did not answer within {START_TIMEOUT:.0f}s: see {log_path}"
            )
        time.sleep(0.05)
