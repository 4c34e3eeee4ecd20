"""``start``: release a created container's init so it execs the user's program."""

from __future__ import annotations

import contextlib
import os
import select

from moorage.errors import FailedPrecondition
from moorage.runtime.container import RUNNING, ContainerDir, oci_state, require, status_of


def start(root: str, container_id: str) -> None:
    cdir = ContainerDir(root, container_id)
    with cdir.locked():
        record = cdir.read()
        require("start", container_id, status_of(cdir, record))
        # Non-blocking open: a reader that waits for a dead init would hang forever.
        fifo = os.open(cdir.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        pidfd = os.pidfd_open(record.pid)
        try:
            poller = select.poll()
            poller.register(fifo, select.POLLIN)
            poller.register(pidfd, select.POLLIN)
            data = b""
            while not data:
                events = dict(poller.poll())
                if fifo in events:
                    with contextlib.suppress(BlockingIOError):
                        data = os.read(fifo, 1)
                    if data:
                        break
                if pidfd in events:
                    raise FailedPrecondition(f"container init exited before start: {container_id}")
        finally:
            os.close(pidfd)
            os.close(fifo)
        os.unlink(cdir.fifo)
    poststart = record.config.get("hooks", {}).get("poststart")
    if poststart:
        from moorage.runtime.hooks import run_hook_dicts_warn

        run_hook_dicts_warn(poststart, "poststart", oci_state(record, RUNNING).to_dict())
