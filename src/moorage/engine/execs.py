"""Exec instances (``docker exec``): created, started once, inspected afterwards.

The process runs under the container's monitor (``monitor_client.exec``), which
is the subreaper that sees it exit; the daemon keeps the instance records in
memory, as dockerd does (they do not survive a daemon restart).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from moorage.engine.etcfiles import lookup_user
from moorage.engine.specgen import console_size
from moorage.errors import Conflict, InvalidArgument, NotFound

KEEP_FINISHED = 1024  # finished instances kept for inspect, oldest dropped first


@dataclass
class ExecInstance:
    id: str
    container_id: str
    cmd: list[str]
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    env: list[str]
    user: str
    working_dir: str
    privileged: bool
    detach_keys: str = ""
    console_size: tuple[int, int] | None = None  # (rows, columns) of a -t terminal
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.tty,
                "entrypoint": self.cmd[0],
                "arguments": self.cmd[1:],
                "privileged": self.privileged,
                "user": self.user,
            },
            "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout,
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{key}: must be an array of strings")
    return list(value)


class ExecService:
    def __init__(self, containers: Any) -> None:
        self.containers = containers
        self._lock = threading.Lock()
        self._execs: dict[str, ExecInstance] = {}

    def create(self, ref: str, body: Any) -> str:
        if not isinstance(body, dict):
            raise InvalidArgument("exec config: must be a JSON object")
        c = self.containers.get(ref)
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        if c.state.status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        cmd = _strings(body, "Cmd")
        if not cmd:
            raise InvalidArgument("No exec command specified")
        for item in _strings(body, "Env"):
            if item.partition("=")[0] == "":
                raise InvalidArgument(f'Env: invalid environment variable "{item}"')
        working_dir = body.get("WorkingDir") or ""
        if working_dir and not str(working_dir).startswith("/"):
            raise InvalidArgument(f'WorkingDir: must be an absolute path, not "{working_dir}"')
        instance = ExecInstance(
            id=secrets.token_hex(32),
            container_id=c.id,
            cmd=cmd,
            tty=bool(body.get("Tty")),
            attach_stdin=bool(body.get("AttachStdin")),
            attach_stdout=bool(body.get("AttachStdout")),
            attach_stderr=bool(body.get("AttachStderr")),
            env=_strings(body, "Env"),
            user=str(body.get("User") or ""),
            working_dir=str(working_dir),
            privileged=bool(body.get("Privileged")),
            detach_keys=str(body.get("DetachKeys") or ""),
            console_size=console_size(body.get("ConsoleSize"), "ConsoleSize"),
        )
        with self._lock:
            self._execs[instance.id] = instance
            self._trim()
        c.exec_ids.append(instance.id)
        return instance.id

    def _trim(self) -> None:
        finished = [e for e in self._execs.values() if e.done.is_set()]
        for e in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._execs[e.id]

    def get(self, exec_id: str) -> ExecInstance:
        with self._lock:
            instance = self._execs.get(exec_id)
        if instance is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    def claim(self, exec_id: str) -> ExecInstance:
        """Mark an instance started (once only) and check its container still runs."""
        instance = self.get(exec_id)
        with self._lock:
            if instance.started:
                raise Conflict(f"Error: Exec command {exec_id} has already run")
            instance.started = True
        c = self.containers.get(instance.container_id)
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        return instance

    def process(self, instance: ExecInstance) -> dict[str, Any]:
        """The OCI process of an exec: the container's, with the exec's overrides."""
        return process_spec(
            os.path.join(self.containers.root, instance.container_id),
            instance.cmd,
            env=instance.env,
            user=instance.user,
            working_dir=instance.working_dir,
            tty=instance.tty,
            privileged=instance.privileged,
            console_size=instance.console_size,
        )


def process_spec(
    directory: str,
    cmd: list[str],
    *,
    env: list[str] | None = None,
    user: str = "",
    working_dir: str = "",
    tty: bool = False,
    privileged: bool = False,
    console_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A process to run in the container of ``directory``: its own process with
    ``cmd``, more environment, and another user, directory or terminal."""
    with open(os.path.join(directory, "bundle", "config.json"), "rb") as f:
        spec = json.load(f)
    process = dict(spec["process"])
    process["args"] = list(cmd)
    process["terminal"] = tty
    merged = list(process.get("env") or [])
    for item in env or []:
        key = item.partition("=")[0]
        merged = [e for e in merged if e.partition("=")[0] != key] + [item]
    process["env"] = merged
    if working_dir:
        process["cwd"] = working_dir
    if user:
        uid, gid, groups = lookup_user(os.path.join(directory, "rootfs"), user)
        process["user"] = {"uid": uid, "gid": gid}
        if groups:
            process["user"]["additionalGids"] = groups
    if privileged:
        from moorage.sys.caps import CAPABILITIES

        caps = list(CAPABILITIES)
        process["capabilities"] = {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
            "inheritable": [],
            "ambient": [],
        }
    process.pop("consoleSize", None)
    if tty and console_size is not None:
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    return process
