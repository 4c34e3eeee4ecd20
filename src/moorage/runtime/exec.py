"""``exec``: start another process inside a running container."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, NamedTuple

from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.oci.runtime_spec import parse_process, process_to_dict
from moorage.runtime.cgroups.manager import new_manager
from moorage.runtime.container import ContainerDir, require
from moorage.runtime.spawn import Stdio, connect_console, spawn_stage
from moorage.runtime.state import current_status


class ExecOptions(NamedTuple):
    process: dict[str, Any]
    pid_file: str | None = None
    console_socket: str | None = None
    console_sock: socket.socket | None = None
    preserve_fds: int = 0
    stdin: Stdio = None
    stdout: Stdio = None
    stderr: Stdio = None


def exec_process(root: str, container_id: str, opts: ExecOptions) -> int:
    """Start the process; return its host pid once it has exec'd the program."""
    cdir = ContainerDir(root, container_id)
    record = cdir.read()
    require("exec", container_id, current_status(cdir, record))
    process = parse_process(opts.process)
    console = opts.console_sock
    with contextlib.ExitStack() as stack:
        if process.terminal and console is None:
            if opts.console_socket is None:
                raise InvalidArgument("process.terminal is set: --console-socket is required")
            console = stack.enter_context(connect_console(opts.console_socket))
        extra = [console.fileno()] if process.terminal and console is not None else []
        proc, chan = spawn_stage(
            label=container_id,
            preserve_fds=opts.preserve_fds,
            extra_fds=extra,
            stdin=opts.stdin,
            stdout=opts.stdout,
            stderr=opts.stderr,
        )
        stack.callback(chan.close)
        try:
            chan.send(
                "bootstrap",
                role="exec",
                config=record.config,
                process=process_to_dict(process),
                pid=record.pid,
                console_fd=extra[0] if extra else None,
                preserve_fds=opts.preserve_fds,
                seccomp=_seccomp_program(record.config, root),
            )
            new_manager(record.cgroups_path or None, container_id).join(proc.pid)
            chan.send("joined")
            pid = 0
            while (msg := chan.recv()) is not None:
                if msg["type"] == "error":
                    raise FailedPrecondition(msg["message"])
                if msg["type"] == "pid":
                    pid = msg["pid"]
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        if proc.pid != pid:
            proc.wait()
        if not pid:
            raise FailedPrecondition(f"exec in container {container_id} failed")
    if opts.pid_file:
        tmp = f"{opts.pid_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, opts.pid_file)
    return pid


def _seccomp_program(config: dict[str, Any], root: str) -> dict[str, Any] | None:
    profile = config.get("linux", {}).get("seccomp")
    if not profile:
        return None
    from moorage.runtime.seccomp_cache import program_for

    return program_for(profile, root)
