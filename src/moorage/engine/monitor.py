"""The per-container monitor: the container's parent, its log writer and its witness.

``python -m moorage.engine.monitor DIR`` runs one container described by
``DIR/monitor.json`` and stays its parent (a child subreaper) until it exits:

1. creates and starts it with the runtime's in-process API, its stdout and stderr
   on pipes the monitor holds;
2. copies what it prints into the json-file log (``engine.logs``);
3. records ``DIR/state.json`` when it starts (pid, started_at) and when it exits
   (exit code, OOMKilled, finished_at), each time atomically;
4. deletes the runtime container (cgroup, runtime state) and exits.

It depends on nothing of the daemon, so a daemon that dies (kill -9) or restarts
loses no container, no log line and no exit code: a new daemon reads state.json.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any, Literal, NamedTuple

from moorage.engine.logs import JsonFileWriter, parse_log_opts
from moorage.errors import InvalidArgument, MoorageError


class Task(NamedTuple):
    id: str
    bundle: str
    runtime_root: str
    log_path: str
    log_opts: dict[str, str]

    @classmethod
    def load(cls, directory: str) -> Task:
        path = os.path.join(directory, "monitor.json")
        try:
            with open(path, "rb") as f:
                data = json.load(f)
            return cls(
                id=data["id"],
                bundle=data["bundle"],
                runtime_root=data["runtime_root"],
                log_path=data["log_path"],
                log_opts=dict(data.get("log_opts", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"monitor task {path}: {exc}") from exc


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


def _pump(
    fd: int, stream: Literal["stdout", "stderr"], writer: JsonFileWriter, lock: threading.Lock
) -> None:
    with os.fdopen(fd, "rb", buffering=0) as source:
        while chunk := source.read(65536):
            with lock:
                writer.write(stream, chunk)


def run(directory: str) -> int:
    """Run the container of ``directory``; return its exit code (also recorded)."""
    from moorage.runtime import api
    from moorage.runtime.cgroups.manager import new_manager

    task = Task.load(directory)
    api.become_subreaper()
    opts = parse_log_opts(task.log_opts)
    writer = JsonFileWriter(task.log_path, max_size=opts.max_size, max_file=opts.max_file)
    lock = threading.Lock()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        record = api.create(
            task.runtime_root,
            task.id,
            api.CreateOptions(bundle=task.bundle, stdin=devnull, stdout=out_w, stderr=err_w),
        )
    except MoorageError as exc:
        for fd in (out_r, out_w, err_r, err_w, devnull):
            os.close(fd)
        write_state(
            directory,
            {
                "status": "exited",
                "exit_code": 127,
                "error": str(exc),
                "oom_killed": False,
                "finished_at": now_rfc3339(),
            },
        )
        writer.close()
        return 127
    # Our write ends must go, or the pumps would never see end-of-file.
    for fd in (out_w, err_w, devnull):
        os.close(fd)
    pumps = [
        threading.Thread(target=_pump, args=(out_r, "stdout", writer, lock), daemon=True),
        threading.Thread(target=_pump, args=(err_r, "stderr", writer, lock), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    api.start(task.runtime_root, task.id)
    write_state(
        directory,
        {
            "status": "running",
            "pid": record.pid,
            "monitor_pid": os.getpid(),
            "started_at": now_rfc3339(),
        },
    )
    code = api.wait_child(record.pid)
    for pump in pumps:
        pump.join()  # the init's pid namespace is gone: every writer closed its end
    with lock:
        writer.close()
    cgroup = new_manager(record.cgroups_path or None, task.id)
    try:
        oom_killed = cgroup.oom_kill_count() > 0
    except MoorageError:
        oom_killed = False
    api.delete(task.runtime_root, task.id, force=True)
    write_state(
        directory,
        {
            "status": "exited",
            "exit_code": code,
            "oom_killed": oom_killed,
            "finished_at": now_rfc3339(),
        },
    )
    return code


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m moorage.engine.monitor CONTAINER_DIR\n")
        sys.exit(2)
    # A stop request reaches the container through the daemon (runtime kill), not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        sys.exit(0 if run(sys.argv[1]) >= 0 else 1)
    except MoorageError as exc:
        sys.stderr.write(f"moor monitor: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
