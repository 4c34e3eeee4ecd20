"""The per-container monitor runs a container to the end on its own: logs, exit code,
OOM, cleanup, and none of it depends on a daemon being there. Its control socket
starts it, attaches clients (frames, tty, stdin), resizes its terminal and execs.

Every test that takes ``monitors`` runs twice: with monitors started as a process of
their own, and forked by a monitor zygote (``engine.monitor_zygote``), as the daemon
starts them."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bundles import make_bundle
from moorage.engine.logs import read_logs, unframe
from moorage.engine.monitor import read_state
from moorage.engine.monitor_client import MonitorClient, launch
from moorage.engine.monitor_zygote import MonitorZygote
from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    Unavailable,
)
from moorage.runtime import api
from moorage.runtime.cgroups.manager import new_manager
from moorage.sys import libc

pytestmark = pytest.mark.root

WAIT = 60.0  # seconds: only a bound for a hung test, never a timing assertion


class Launched(NamedTuple):
    cid: str
    directory: Path
    socket: str
    pid: int
    client: MonitorClient
    bundle: Path


def _wait_pid(pid: int, timeout: float = WAIT) -> None:
    """Wait for ``pid`` to exit; reap it when it is our child."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        assert poller.poll(int(timeout * 1000)), f"process {pid} did not exit"
    finally:
        os.close(pidfd)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class Monitors:
    """Launches monitors for a test and leaves nothing behind, whatever happens."""

    def __init__(
        self,
        tmp_path: Path,
        runtime_root: Path,
        template: Path,
        zygote: MonitorZygote | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.runtime_root = runtime_root
        self.template = template
        self.zygote = zygote
        # Short: a unix socket path has at most 107 bytes.
        self.sockets = Path(tempfile.mkdtemp(prefix="moor-mon-"))
        self.pids: list[int] = []
        self.mounts: list[Path] = []

    def bundle(self, name: str, args: list[str], **edits: Any) -> Path:
        def edit(config: dict[str, Any]) -> None:
            config["process"].update(edits)

        return make_bundle(self.tmp_path / name, args, template=self.template, edit=edit)

    def task(self, cid: str, bundle: Path, **extra: Any) -> tuple[Path, dict[str, Any]]:
        directory = self.tmp_path / cid
        directory.mkdir()
        task = {
            "id": cid,
            "bundle": str(bundle),
            "runtime_root": str(self.runtime_root),
            "log_path": str(directory / f"{cid}-json.log"),
            "log_opts": {},
            "socket": str(self.sockets / f"{cid}.sock"),
            **extra,
        }
        return directory, task

    def launch_task(self, directory: Path, task: dict[str, Any]) -> int:
        pid = launch(str(directory), task, zygote=self.zygote)
        self.pids.append(pid)
        return pid

    def launch(self, cid: str, bundle: Path, **extra: Any) -> Launched:
        directory, task = self.task(cid, bundle, **extra)
        pid = self.launch_task(directory, task)
        return Launched(cid, directory, task["socket"], pid, MonitorClient(task["socket"]), bundle)

    def tmpfs(self, name: str) -> Path:
        target = self.tmp_path / name
        target.mkdir()
        libc.mount("tmpfs", str(target), "tmpfs")
        self.mounts.append(target)
        assert os.path.ismount(target)
        return target

    def finished(self, m: Launched) -> dict[str, Any]:
        """Wait for the monitor to exit; check it left nothing; return the final state."""
        _wait_pid(m.pid)
        self.pids.remove(m.pid)
        state = read_state(str(m.directory))
        assert state is not None
        assert state["status"] == "exited", state
        assert not os.path.exists(m.socket)
        assert not (self.runtime_root / m.cid).exists()  # the runtime container is gone
        config = json.loads((m.bundle / "config.json").read_text())
        assert not new_manager(config["linux"]["cgroupsPath"], m.cid).exists()
        return state

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_pid(pid)
        for target in self.mounts:
            with contextlib.suppress(OSError):
                libc.umount2(str(target), libc.MNT_DETACH)
        shutil.rmtree(self.sockets, ignore_errors=True)


@pytest.fixture(scope="module")
def monitor_zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitorZygote]:
    zygote = MonitorZygote(str(tmp_path_factory.mktemp("zygote")))
    try:
        yield zygote
    finally:
        zygote.close()


@pytest.fixture(params=["process", "zygote"])
def monitors(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    runtime_root: Path,
    busybox_template: Path,
    monitor_zygote: MonitorZygote,
) -> Iterator[Monitors]:
    # Torn down before runtime_root, which force-deletes any container left.
    zygote = monitor_zygote if request.param == "zygote" else None
    m = Monitors(tmp_path, runtime_root, busybox_template, zygote)
    try:
        yield m
    finally:
        m.close()


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(WAIT)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    sock.close()
    return b"".join(chunks)


def _by_stream(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for stream, payload in unframe(data):
        out[stream] = out.get(stream, b"") + payload
    return out


def _read_until(sock: socket.socket, wanted: bytes, framed: bool) -> bytes:
    """Read from an attach stream until the (unframed) output contains ``wanted``."""
    sock.settimeout(WAIT)
    raw = b""
    while True:
        data = sock.recv(65536)
        assert data, f"stream ended before {wanted!r}: {raw!r}"
        raw += data
        text = raw
        if framed:
            whole = b""
            rest = raw
            while len(rest) >= 8:
                size = struct.unpack(">I", rest[4:8])[0]
                if len(rest) < 8 + size:
                    break
                whole += rest[8 : 8 + size]
                rest = rest[8 + size :]
            text = whole
        if wanted in text:
            return raw


def _logged(m: Launched) -> list[tuple[str, bytes]]:
    return [(line.stream, line.data) for line in read_logs(str(m.directory / f"{m.cid}-json.log"))]


def _process(m: Launched, args: list[str], **extra: Any) -> dict[str, Any]:
    process: dict[str, Any] = json.loads((m.bundle / "config.json").read_text())["process"]
    return {**process, "args": args, **extra}


def _raw_request(path: str, payload: bytes, fds: list[int] | None = None) -> dict[str, Any]:
    """Send bytes as they are; return the reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(path)
        if fds:
            socket.send_fds(sock, [payload[:1]], fds)
            payload = payload[1:]
        # A flood may be cut short: the monitor answers and closes once it has enough.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        if not payload.endswith(b"\n"):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(4096)
            assert data, f"no reply to {payload[:80]!r}"
            reply += data
        with contextlib.suppress(ConnectionResetError):  # it may not read all of a flood
            assert sock.recv(4096) == b""  # one request per connection
    parsed: dict[str, Any] = json.loads(reply)
    return parsed


# -- the basics ----------------------------------------------------------------------


def test_logs_and_exit_code_are_recorded(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    m = monitors.launch("m1", bundle)
    assert m.client.start() > 0
    state = monitors.finished(m)
    assert (state["exit_code"], state["oom_killed"]) == (3, False)
    assert sorted(_logged(m)) == [("stderr", b"err\n"), ("stdout", b"out\n")]


def test_the_monitor_outlives_whoever_started_it(monitors: Monitors) -> None:
    """Its launcher (a process standing in for the daemon) exits at once; the container
    still runs, logs and has its exit recorded by the monitor alone."""
    bundle = monitors.bundle("c", ["sh", "-c", "echo start; sleep 1000"])
    directory, task = monitors.task("m2", bundle)
    script = (
        "import json, sys\n"
        "from moorage.engine.monitor_client import MonitorClient, launch\n"
        "task = json.loads(sys.argv[2])\n"
        "print(launch(sys.argv[1], task), flush=True)\n"
        "MonitorClient(task['socket']).start()\n"
    )
    starter = subprocess.run(
        [sys.executable, "-c", script, str(directory), json.dumps(task)],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(starter.stdout)  # the starter is gone; the monitor is an orphan now
    monitors.pids.append(pid)
    m = Launched("m2", directory, task["socket"], pid, MonitorClient(task["socket"]), bundle)
    assert m.client.state()["status"] == "running"
    api.kill(str(monitors.runtime_root), "m2", "KILL")
    assert monitors.finished(m)["exit_code"] == 137
    assert [data for _, data in _logged(m)] == [b"start\n"]


def test_oom_kill_is_recorded(monitors: Monitors, tmp_path: Path, busybox_template: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["memory"] = {"limit": 16 * 1024 * 1024}

    bundle = make_bundle(
        tmp_path / "b",
        ["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo $x | wc -c"],
        template=busybox_template,
        edit=edit,
    )
    m = monitors.launch("m3", bundle)
    m.client.start()
    state = monitors.finished(m)
    assert state["oom_killed"] is True
    assert state["exit_code"] != 0


def test_container_signals_are_not_ignored(monitors: Monitors) -> None:
    """The monitor catches SIGINT and SIGHUP for itself; ignoring them would have
    passed the disposition on to the container's processes."""
    bundle = monitors.bundle("b", ["grep", "SigIgn", "/proc/self/status"])
    m = monitors.launch("sig", bundle)
    m.client.start()
    assert monitors.finished(m)["exit_code"] == 0
    [(_, line)] = _logged(m)
    ignored = int(line.split()[1], 16)
    assert ignored & (1 << (signal.SIGINT - 1)) == 0
    assert ignored & (1 << (signal.SIGHUP - 1)) == 0


# -- launching and failing -----------------------------------------------------------


def test_a_container_that_cannot_be_created_is_refused_and_recorded(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["/no/such/program"])
    mount = monitors.tmpfs("rootfs")
    directory, task = monitors.task("m4", bundle, rootfs_mount=str(mount))
    with pytest.raises(MoorageError, match="/no/such/program"):
        monitors.launch_task(directory, task)
    state = read_state(str(directory))
    assert state is not None
    assert (state["status"], state["exit_code"]) == ("exited", 127)
    assert "/no/such/program" in state["error"]
    assert not os.path.exists(task["socket"])
    assert not os.path.ismount(mount)  # the monitor owned the mount, and let it go
    assert not (monitors.runtime_root / "m4").exists()


def test_launch_reports_a_bad_bundle(monitors: Monitors, tmp_path: Path) -> None:
    directory, task = monitors.task("m5", tmp_path / "no-such-bundle")
    with pytest.raises(NotFound, match="bundle does not exist"):
        monitors.launch_task(directory, task)
    state = read_state(str(directory))
    assert state is not None
    assert state["exit_code"] == 127
    assert "bundle does not exist" in state["error"]
    assert not os.path.exists(task["socket"])


def test_launch_reports_a_bad_task(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["true"])
    directory, task = monitors.task("m6", bundle)
    del task["id"]
    with pytest.raises(InvalidArgument, match="id"):
        monitors.launch_task(directory, task)
    state = read_state(str(directory))
    assert state is not None
    assert state["exit_code"] == 127


def test_launch_reports_a_monitor_that_dies_before_ready(
    monitors: Monitors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'something went wrong' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    directory, task = monitors.task("m7", monitors.bundle("b", ["true"]))
    with pytest.raises(Unavailable, match="status 3.*something went wrong"):
        launch(str(directory), task)


def test_the_rootfs_mount_is_unmounted_after_the_container(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["true"])
    mount = monitors.tmpfs("rootfs")
    m = monitors.launch("um", bundle, rootfs_mount=str(mount))
    assert os.path.ismount(mount)  # still there while the container exists
    m.client.start()
    assert monitors.finished(m)["exit_code"] == 0
    assert not os.path.ismount(mount)


# -- start and attach ----------------------------------------------------------------


def test_start_is_deferred_and_attach_before_start_gets_everything(monitors: Monitors) -> None:
    bundle = monitors.bundle(
        "b", ["sh", "-c", "echo out; echo err >&2; echo out2; echo err2 >&2; exit 5"]
    )
    m = monitors.launch("att", bundle)
    state = m.client.state()
    assert state["status"] == "created"
    assert state["pid"] > 0
    assert read_state(str(m.directory))["status"] == "created"  # type: ignore[index]
    assert _logged(m) == []  # created, not started: nothing ran
    with pytest.raises(FailedPrecondition, match="no terminal"):
        m.client.resize(24, 80)
    both = m.client.attach(stdin=False, stdout=True, stderr=True)
    out_only = m.client.attach(stdin=True, stdout=True, stderr=False)
    err_only = m.client.attach(stdin=False, stdout=False, stderr=True)
    assert m.client.start() == state["pid"]
    assert read_state(str(m.directory))["status"] in ("running", "exited")  # type: ignore[index]
    with pytest.raises(Conflict):
        m.client.start()
    assert _by_stream(_read_all(both)) == {1: b"out\nout2\n", 2: b"err\nerr2\n"}
    assert _by_stream(_read_all(out_only)) == {1: b"out\nout2\n"}
    assert _by_stream(_read_all(err_only)) == {2: b"err\nerr2\n"}
    assert monitors.finished(m)["exit_code"] == 5


def test_tty_attach_is_raw_and_resize_reaches_the_process(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["sh", "-c", "read x; stty size; echo done >&2"], terminal=True)
    m = monitors.launch("tty", bundle, tty=True, open_stdin=True)
    stream = m.client.attach(stdin=True, stdout=True, stderr=True)
    m.client.start()
    m.client.resize(40, 100)
    with pytest.raises(NotFound):
        m.client.resize(40, 100, exec_id="nope")
    stream.sendall(b"go\n")
    out = _read_all(stream)
    assert b"40 100\r\n" in out
    assert b"done\r\n" in out  # stderr is the terminal too
    assert out.startswith(b"go")  # raw: the terminal's echo, no frame header
    assert monitors.finished(m)["exit_code"] == 0
    logged = b"".join(data for stream_name, data in _logged(m) if stream_name == "stdout")
    assert b"40 100" in logged


def test_open_stdin_feeds_the_container_and_stdin_once_closes_it(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["cat"])
    m = monitors.launch("cat", bundle, open_stdin=True, stdin_once=True)
    stream = m.client.attach(stdin=True, stdout=True, stderr=True)
    watcher = m.client.attach(stdin=False, stdout=True, stderr=False)
    m.client.start()
    stream.sendall(b"hello\n")
    _read_until(stream, b"hello\n", framed=True)
    stream.sendall(b"world\n")
    stream.shutdown(socket.SHUT_WR)  # the client is done: EOF for cat, which exits
    assert _by_stream(_read_all(watcher)) == {1: b"hello\nworld\n"}
    assert monitors.finished(m)["exit_code"] == 0
    assert _logged(m) == [("stdout", b"hello\n"), ("stdout", b"world\n")]
    stream.close()


def test_without_stdin_once_stdin_outlives_a_client(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["cat"])
    m = monitors.launch("cat2", bundle, open_stdin=True)
    first = m.client.attach(stdin=True, stdout=True, stderr=False)
    m.client.start()
    first.sendall(b"one\n")
    _read_until(first, b"one\n", framed=True)
    first.shutdown(socket.SHUT_WR)
    second = m.client.attach(stdin=True, stdout=True, stderr=False)
    second.sendall(b"two\n")
    _read_until(second, b"two\n", framed=True)  # cat still reads: stdin is open
    api.kill(str(monitors.runtime_root), "cat2", "KILL")
    assert monitors.finished(m)["exit_code"] == 137
    first.close()
    second.close()


def test_a_slow_attach_client_is_dropped_not_waited_for(monitors: Monitors) -> None:
    size = 3_000_000
    bundle = monitors.bundle("b", ["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' a"])
    m = monitors.launch("slow", bundle)
    slow = m.client.attach(stdin=False, stdout=True, stderr=True)  # never reads
    m.client.start()
    # The container finishes and the monitor exits with the client still not reading.
    assert monitors.finished(m)["exit_code"] == 0
    assert sum(len(data) for _, data in _logged(m)) == size  # the log has it all
    got = _read_all(slow)  # what the kernel held for it, then the end of the stream
    assert len(got) < size


# -- exec ----------------------------------------------------------------------------


def test_exec_with_pipes_and_with_a_terminal(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["sleep", "1000"])
    m = monitors.launch("ex", bundle)
    with pytest.raises(Conflict, match="not running"):
        m.client.exec(_process(m, ["true"], terminal=True), "early")
    m.client.start()

    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    script = "echo hi; echo oops >&2; read x; echo got $x; exit 7"
    handle = m.client.exec(_process(m, ["sh", "-c", script]), "e1", fds=(in_r, out_w, err_w))
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    assert handle.pid > 0
    assert handle.master_fd is None
    os.write(in_w, b"abc\n")
    os.close(in_w)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        assert (out.read(), err.read()) == (b"hi\ngot abc\n", b"oops\n")
    assert handle.wait() == 7
    handle.close()

    tty_process = _process(m, ["sh", "-c", "read x; stty size; exit 3"], terminal=True)
    with m.client.exec(tty_process, "t1") as term:
        assert term.master_fd is not None
        m.client.resize(30, 90, exec_id="t1")
        os.write(term.master_fd, b"go\n")
        output = b""
        poller = select.poll()
        poller.register(term.master_fd, select.POLLIN)
        while True:
            assert poller.poll(int(WAIT * 1000)), output
            try:
                data = os.read(term.master_fd, 4096)
            except OSError:  # EIO: the process and its terminal are gone
                break
            if not data:
                break
            output += data
        os.close(term.master_fd)
        assert b"30 90\r\n" in output
        assert term.wait() == 3
    with pytest.raises(NotFound, match="no such exec"):
        m.client.resize(30, 90, exec_id="t1")  # forgotten once it exited

    with pytest.raises(NotFound, match='exec: "nosuchcommand": executable file not found'):
        m.client.exec(_process(m, ["nosuchcommand"], terminal=True), "e2")
    with pytest.raises(NotFound, match="/no/such/bin"):
        m.client.exec(_process(m, ["/no/such/bin"], terminal=True), "e3")

    # An exec still running when the container goes is told its exit too.
    sleeper = m.client.exec(_process(m, ["sleep", "1000"], terminal=True), "e4")
    api.kill(str(monitors.runtime_root), "ex", "KILL")
    assert sleeper.wait() == 137
    assert sleeper.master_fd is not None
    os.close(sleeper.master_fd)
    sleeper.close()
    assert monitors.finished(m)["exit_code"] == 137


# -- hostile input -------------------------------------------------------------------


def test_garbage_on_the_socket_gets_errors_and_breaks_nothing(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["sh", "-c", "echo alive; sleep 1000"])
    m = monitors.launch("bad", bundle)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(m.socket)  # and says nothing at all
    bad: list[bytes] = [
        b"no newline, then end of stream",
        b"\xff\xfe\x00\n",
        b"[1, 2]\n",
        b'{"op": "nope"}\n',
        b'{"no": "op"}\n',
        b'{"op": "resize", "height": "x", "width": 1}\n',
        b'{"op": "resize", "height": 70000, "width": 1}\n',
        b'{"op": "resize", "height": true, "width": 1}\n',
        b'{"op": "attach", "stdin": "yes"}\n',
        b'{"op": "exec", "process": 5, "exec_id": "x"}\n',
        b'{"op": "exec", "process": {"args": ["true"]}, "exec_id": ""}\n',
        b'{"op": "exec", "process": {"args": ["true"]}, "exec_id": "x"}\n',
        b"x" * (1 << 20) + b"y" * 70000,
    ]
    for payload in bad:
        reply = _raw_request(m.socket, payload)
        assert reply["ok"] is False, payload[:80]
        assert reply["error"]
    assert _raw_request(m.socket, b'{"op": "nope"}\n')["kind"] == "InvalidArgument"

    # Descriptors sent with a request that takes none: refused, and not kept.
    r, w = os.pipe()
    assert _raw_request(m.socket, b'{"op": "state"}\n', fds=[w])["ok"] is False
    os.close(w)
    assert os.read(r, 1) == b""  # no copy of the write end is left in the monitor
    os.close(r)

    assert m.client.state()["status"] == "created"
    m.client.start()
    # Once running: a malformed process, and an exec with descriptors it must not keep.
    r, w = os.pipe()
    with pytest.raises(InvalidArgument):
        m.client.exec({"args": [], "cwd": "relative"}, "x", fds=(w, w, w))
    os.close(w)
    assert os.read(r, 1) == b""
    os.close(r)
    stream = m.client.attach(stdin=False, stdout=True, stderr=True)
    deadline = time.monotonic() + WAIT  # killed before it has said it: nothing to check
    while not _logged(m) and time.monotonic() < deadline:
        time.sleep(0.01)
    api.kill(str(monitors.runtime_root), "bad", "KILL")
    _read_all(stream)
    assert monitors.finished(m)["exit_code"] == 137
    assert _logged(m) == [("stdout", b"alive\n")]


def test_several_requests_at_once(monitors: Monitors) -> None:
    bundle = monitors.bundle("b", ["sleep", "1000"])
    m = monitors.launch("many", bundle)
    m.client.start()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            for _ in range(20):
                assert m.client.state()["status"] == "running"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    api.kill(str(monitors.runtime_root), "many", "KILL")
    assert monitors.finished(m)["exit_code"] == 137


def test_a_container_in_the_hosts_pid_namespace(monitors: Monitors, tmp_path: Path) -> None:
    """Without a pid namespace the runtime's stage process is itself the init or the
    exec'd process: exit statuses must still reach the monitor, not ``subprocess``."""

    def edit(config: dict[str, Any]) -> None:
        namespaces = config["linux"]["namespaces"]
        config["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "pid"]

    bundle = make_bundle(tmp_path / "b", ["sleep", "1000"], template=monitors.template, edit=edit)
    m = monitors.launch("hostpid", bundle)
    m.client.start()
    errors: list[BaseException] = []

    def execs(worker: int) -> None:
        # Concurrent execs: one's stage is being started while another's process exits.
        try:
            for code in range(1, 6):
                process = _process(m, ["sh", "-c", f"exit {code}"], terminal=True)
                with m.client.exec(process, f"e{worker}.{code}") as handle:
                    assert handle.wait(timeout=WAIT) == code
                    assert handle.master_fd is not None
                    os.close(handle.master_fd)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=execs, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    api.kill(str(monitors.runtime_root), "hostpid", "KILL")
    assert monitors.finished(m)["exit_code"] == 137


def test_output_held_open_past_the_init_is_ended(monitors: Monitors, tmp_path: Path) -> None:
    """Without a pid namespace a process can outlive the init holding its stdout: the
    monitor must not wait for it forever; it ends the cgroup after a grace period."""

    def edit(config: dict[str, Any]) -> None:
        namespaces = config["linux"]["namespaces"]
        config["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "pid"]

    bundle = make_bundle(
        tmp_path / "b",
        ["sh", "-c", "sleep 1000 & echo started; exit 2"],
        template=monitors.template,
        edit=edit,
    )
    m = monitors.launch("held", bundle)
    m.client.start()
    assert monitors.finished(m)["exit_code"] == 2
    assert _logged(m) == [("stdout", b"started\n")]
