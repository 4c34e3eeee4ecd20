"""Monitors forked from the monitor zygote (``engine.monitor_zygote``), as the daemon
starts them: a container runs to its end with its logs and exit code; the processes
that enter the container run from the sealed copy of the interpreter and leak no
descriptor; a dead zygote (or spare) costs nothing but a restart, one that cannot
start costs the fast path only; a daemon killed with -9 adopts the forked monitors
again, and a daemon that stops leaves no zygote behind."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bundles import make_bundle
from daemon import Daemon, running_daemon
from moorage.api.client import Client
from moorage.engine.containers import _is_monitor
from moorage.engine.logs import read_logs
from moorage.engine.monitor import read_state
from moorage.engine.monitor_client import MonitorClient, launch
from moorage.engine.monitor_zygote import MonitorZygote
from moorage.runtime import api

pytestmark = pytest.mark.root

WAIT = 60.0  # seconds: only a bound for a hung test, never a timing assertion
_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK


def _await(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    _await(lambda: _gone(pid))


def _labelled(label: str) -> dict[int, str]:
    """Live processes whose command line has ``label``: pid -> working directory."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or _gone(int(entry)):
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if label.encode() in argv:
            found[int(entry)] = cwd
    return found


class Zygotes:
    """A zygote for one test, and what it launched; nothing is left behind."""

    def __init__(self, tmp_path: Path, runtime_root: Path, template: Path) -> None:
        self.tmp_path = tmp_path
        self.runtime_root = runtime_root
        self.template = template
        self.label = str(tmp_path / "containers")
        self.zygote = MonitorZygote(self.label)
        self.sockets = Path(tempfile.mkdtemp(prefix="moor-zyg-"))
        self.pids: list[int] = []

    def task(self, cid: str, args: list[str]) -> tuple[Path, dict[str, Any]]:
        bundle = make_bundle(self.tmp_path / f"{cid}-bundle", args, template=self.template)
        directory = self.tmp_path / cid  # named by the id, as the daemon names it
        directory.mkdir()
        return directory, {
            "id": cid,
            "bundle": str(bundle),
            "runtime_root": str(self.runtime_root),
            "log_path": str(directory / f"{cid}-json.log"),
            "log_opts": {},
            "socket": str(self.sockets / f"{cid}.sock"),
        }

    def launch(self, cid: str, args: list[str]) -> tuple[Path, dict[str, Any], int]:
        directory, task = self.task(cid, args)
        pid = launch(str(directory), task, zygote=self.zygote)
        self.pids.append(pid)
        return directory, task, pid

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
        self.zygote.close()
        for pid in _labelled(self.label):  # a spare the zygote had ready, if it outlived it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.sockets, ignore_errors=True)


@pytest.fixture
def zygotes(tmp_path: Path, runtime_root: Path, busybox_template: Path) -> Iterator[Zygotes]:
    z = Zygotes(tmp_path, runtime_root, busybox_template)
    try:
        yield z
    finally:
        z.close()


def _finished(directory: Path, pid: int) -> dict[str, Any]:
    _wait_gone(pid)
    state = read_state(str(directory))
    assert state is not None
    assert state["status"] == "exited", state
    return state


def _assert_sealed(pid: int) -> None:
    """/proc/<pid>/exe is a sealed memfd, not a host file: it cannot be opened for
    writing, nor grown or shrunk (CVE-2019-5736)."""
    assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:"), os.readlink(f"/proc/{pid}/exe")
    fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & _SEALS == _SEALS
        host = os.stat(os.path.realpath(sys.executable))
        assert (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != (host.st_dev, host.st_ino)
    finally:
        os.close(fd)
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND):
        with pytest.raises(OSError, match="Text file busy|Operation not permitted"):
            os.close(os.open(f"/proc/{pid}/exe", flags))


# -- a container through the zygote ---------------------------------------------------


def test_a_container_runs_to_completion_with_logs_and_exit_code(zygotes: Zygotes) -> None:
    directory, task, pid = zygotes.launch("z1", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    # Forked, not started: not our child, its command line rewritten to a monitor's,
    # its working directory the container's, and the daemon would know it.
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().rstrip(b"\0").split(b"\0")
    assert argv == [b"moor-monitor", b"moorage.engine.monitor", str(directory).encode()]
    assert os.readlink(f"/proc/{pid}/cwd") == str(directory)
    assert _is_monitor(pid, "z1")
    assert not _is_monitor(pid, "z2")
    assert not _is_monitor(zygotes.zygote.pid or 0, "z1")
    assert MonitorClient(task["socket"]).start() > 0
    state = _finished(directory, pid)
    assert state["exit_code"] == 3
    logged = [(line.stream, line.data) for line in read_logs(task["log_path"])]
    assert sorted(logged) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    assert not (zygotes.runtime_root / "z1").exists()
    # The next one comes from the same zygote.
    directory, task, pid = zygotes.launch("z2", ["true"])
    MonitorClient(task["socket"]).start()
    assert _finished(directory, pid)["exit_code"] == 0
    assert zygotes.zygote.starts == 1


def test_what_enters_the_container_runs_from_the_sealed_copy(zygotes: Zygotes) -> None:
    script = "ls /proc/self/fd; pwd; grep -E 'SigIgn|SigCgt' /proc/self/status"
    directory, task, pid = zygotes.launch("sealed", ["sh", "-c", script])
    created = read_state(str(directory))
    assert created is not None
    init = created["pid"]  # created: blocked before exec, in Python
    for process in (init, pid, zygotes.zygote.pid or 0):
        _assert_sealed(process)
    # Nothing of the monitor's reaches the container: every descriptor of the init but
    # its stdio (and the exec fifo, which it closes itself) closes on exec
    # (CVE-2024-21626), and its cwd is no host directory of ours.
    for entry in os.listdir(f"/proc/{init}/fd"):
        target = os.readlink(f"/proc/{init}/fd/{entry}")
        if int(entry) > 2 and not target.endswith("/exec.fifo"):
            with open(f"/proc/{init}/fdinfo/{entry}") as f:
                flags = int(next(x for x in f if x.startswith("flags:")).split()[1], 8)
            assert flags & os.O_CLOEXEC, (entry, target)
    assert not os.readlink(f"/proc/{init}/cwd").startswith(str(directory))
    MonitorClient(task["socket"]).start()
    assert _finished(directory, pid)["exit_code"] == 0
    out = [line.data.decode() for line in read_logs(task["log_path"])]
    assert out[:5] == ["0\n", "1\n", "2\n", "3\n", "/\n"], out  # 3: ls's own listing
    ignored = int(out[5].split()[1], 16)
    caught = int(out[6].split()[1], 16)
    assert caught == 0  # the monitor's handlers went with the exec
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGTERM):
        assert ignored & (1 << (sig - 1)) == 0


# -- a zygote that dies, or cannot start ------------------------------------------------


def test_a_dead_zygote_is_started_again(zygotes: Zygotes) -> None:
    directory, task, pid = zygotes.launch("d1", ["sleep", "1000"])
    MonitorClient(task["socket"]).start()
    first = zygotes.zygote.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    _await(lambda: _gone(first))
    # Its monitor runs on, and the next launch gets a new zygote.
    assert MonitorClient(task["socket"]).state()["status"] == "running"
    directory2, task2, pid2 = zygotes.launch("d2", ["true"])
    assert zygotes.zygote.starts == 2
    assert zygotes.zygote.pid not in (None, first)
    assert _is_monitor(pid2, "d2")
    MonitorClient(task2["socket"]).start()
    assert _finished(directory2, pid2)["exit_code"] == 0
    api.kill(str(zygotes.runtime_root), "d1", "KILL")
    assert _finished(directory, pid)["exit_code"] == 137


def test_a_dead_spare_is_survived(zygotes: Zygotes) -> None:
    directory, task, pid = zygotes.launch("s1", ["true"])
    MonitorClient(task["socket"]).start()
    _finished(directory, pid)
    zygote = zygotes.zygote.pid
    # The spare waiting for the next request: labelled, in /, not the zygote.
    spares: list[int] = []

    def spare_ready() -> bool:
        spares[:] = [p for p, cwd in _labelled(zygotes.label).items() if cwd == "/" and p != zygote]
        return len(spares) == 1

    _await(spare_ready)
    os.kill(spares[0], signal.SIGKILL)
    directory, task, pid = zygotes.launch("s2", ["sh", "-c", "exit 5"])
    MonitorClient(task["socket"]).start()
    assert _finished(directory, pid)["exit_code"] == 5


def test_a_zygote_that_cannot_start_leaves_the_slow_path(
    zygotes: Zygotes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: str) -> tuple[list[str], dict[str, str], int]:
        return ["/bin/false"], {}, os.open("/bin/false", os.O_RDONLY | os.O_CLOEXEC)

    monkeypatch.setattr("moorage.runtime.spawn.sealed_command", broken)
    directory, task, pid = zygotes.launch("f1", ["sh", "-c", "exit 4"])
    assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # our child: python -m ... DIR
    MonitorClient(task["socket"]).start()
    state = _finished(directory, pid)
    assert state["exit_code"] == 4
    assert zygotes.zygote.pid is None


# -- through the daemon -----------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path / "moor", busybox=True) as d:
        yield d


def _zygote_processes(daemon: Daemon) -> set[int]:
    """The daemon's zygote and its spare: labelled with its exec root, working in /."""
    return {p for p, cwd in _labelled(str(daemon.exec_root)).items() if cwd == "/"}


def test_live_restore_adopts_forked_monitors(daemon: Daemon) -> None:
    api_ = Client(str(daemon.socket), timeout=60)
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "while true; do echo tick; sleep 0.1; done"]}
    cid = api_.request("POST", "/containers/create", json_body=body).json()["Id"]
    api_.request("POST", f"/containers/{cid}/start").read()
    state = api_.get_json(f"/containers/{cid}/json")["State"]
    directory = daemon.root / "containers" / cid
    monitor = json.loads((directory / "state.json").read_text())["monitor_pid"]
    with open(f"/proc/{monitor}/cmdline", "rb") as f:
        assert f.read().startswith(b"moor-monitor\0")  # forked, not exec'd
    assert daemon.proc is not None
    assert f"PPid:\t{daemon.proc.pid}\n" not in Path(f"/proc/{monitor}/status").read_text()
    assert len(_zygote_processes(daemon)) == 2  # the zygote and its spare
    daemon.kill(signal.SIGKILL)
    # Its zygote and spare see the socket close and go; the monitor runs on.
    _await(lambda: not _zygote_processes(daemon))
    log_path = directory / f"{cid}-json.log"
    size = log_path.stat().st_size
    _await(lambda: log_path.stat().st_size > size)
    daemon.start()
    api_ = Client(str(daemon.socket), timeout=60)
    again = api_.get_json(f"/containers/{cid}/json")["State"]
    assert again["Running"]
    assert again["Pid"] == state["Pid"]
    # A new container gets a new zygote; the old monitor is still the one watched.
    _, code = _run(api_, ["sh", "-c", "exit 7"])
    assert code == 7
    api_.request("POST", f"/containers/{cid}/stop", params={"t": 0}).read()
    assert api_.get_json(f"/containers/{cid}/json")["State"]["ExitCode"] == 137
    _wait_gone(monitor)
    # A daemon that stops reaps its zygote: nothing of it is left.
    daemon.stop()
    _await(lambda: not _zygote_processes(daemon))


def _run(api_: Client, cmd: list[str]) -> tuple[str, int]:
    body = {"Image": "busybox", "Cmd": cmd}
    cid = api_.request("POST", "/containers/create", json_body=body).json()["Id"]
    api_.request("POST", f"/containers/{cid}/start").read()
    return cid, int(api_.request("POST", f"/containers/{cid}/wait").json()["StatusCode"])
