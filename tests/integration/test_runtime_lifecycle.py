"""moor-runtime's lifecycle, driven through its command line as an engine would."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bundles import make_bundle
from conftest import moor_runtime

pytestmark = pytest.mark.root


class Runtime:
    def __init__(self, root: Path) -> None:
        self.root = root

    def cmd(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: a created container keeps the stdio it was given, so
        # waiting for end-of-file on a pipe would wait for the container.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [moor_runtime(), "--root", str(self.root), *args],
                stdout=out,
                stderr=err,
                timeout=60,
                check=False,
                **kw,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                proc.args, proc.returncode, out.read().decode(), err.read().decode()
            )
        if check and result.returncode != 0:
            raise AssertionError(f"moor-runtime {' '.join(args)} failed: {result.stderr}")
        return result

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self.cmd("state", cid).stdout)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def rt(runtime_root: Path) -> Runtime:
    return Runtime(runtime_root)


@pytest.fixture
def bundle_factory(tmp_path: Path, busybox_template: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        return make_bundle(
            tmp_path / f"b{next(counter)}", args, template=busybox_template, edit=edit
        )

    return factory


def test_run_passes_output_and_exit_code(rt: Runtime, bundle_factory: Callable[..., Path]) -> None:
    bundle = bundle_factory(["sh", "-c", "echo out; echo err >&2; exit 3"])
    result = rt.cmd("run", "--bundle", str(bundle), "c1", check=False)
    assert (result.stdout, result.returncode) == ("out\n", 3)
    assert "err" in result.stderr
    assert rt.cmd("list", "-q").stdout == ""


def test_the_process_starts_with_no_signal_ignored_or_blocked(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    # The runtime's interpreter ignores SIGPIPE and SIGXFSZ, and this caller ignores
    # SIGHUP and signal 32 (which glibc's own sigaction refuses to touch) and blocks
    # SIGUSR1: the container's process must inherit none of it.
    bundle = bundle_factory(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    result = rt.cmd("run", "--bundle", str(bundle), "sigs", preexec_fn=_ignore_and_block)
    assert result.stdout.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16]


def _ignore_and_block() -> None:
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    ignore = (ctypes.c_uint64 * 4)(1, 0, 0, 0)  # the kernel's sigaction: handler SIG_IGN
    for sig in (signal.SIGHUP, 32):
        libc.syscall(13, sig, ctypes.byref(ignore), None, ctypes.c_size_t(8))  # rt_sigaction
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})


def test_create_blocks_the_init_until_start(
    rt: Runtime, bundle_factory: Callable[..., Path], tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    bundle = bundle_factory(["sh", "-c", "touch /started; sleep 1000"])
    rt.cmd("create", "--bundle", str(bundle), "c1")
    state = rt.state("c1")
    assert state["status"] == "created"
    assert state["pid"] > 0
    assert not (bundle / "rootfs" / "started").exists()
    rt.cmd("start", "c1")
    wait_for(lambda: (bundle / "rootfs" / "started").exists(), "the process to run")
    assert rt.state("c1")["status"] == "running"
    assert not marker.exists()


def test_state_machine_rejects_illegal_transitions(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    bundle = bundle_factory(["sleep", "1000"])
    rt.cmd("create", "--bundle", str(bundle), "c1")
    rt.cmd("start", "c1")
    second = rt.cmd("start", "c1", check=False)
    assert second.returncode != 0
    assert "running" in second.stderr
    refused = rt.cmd("delete", "c1", check=False)
    assert refused.returncode != 0
    assert "not stopped" in refused.stderr
    assert rt.state("c1")["status"] == "running"
    rt.cmd("kill", "c1", "KILL")
    wait_for(lambda: rt.state("c1")["status"] == "stopped", "the container to stop")
    assert rt.cmd("kill", "c1", "TERM", check=False).returncode != 0
    rt.cmd("delete", "c1")
    assert rt.cmd("state", "c1", check=False).returncode != 0


def test_taken_and_invalid_ids_are_refused(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    bundle = bundle_factory(["sleep", "1000"])
    rt.cmd("create", "--bundle", str(bundle), "c1")
    taken = rt.cmd("create", "--bundle", str(bundle), "c1", check=False)
    assert taken.returncode != 0
    assert "exists" in taken.stderr
    assert rt.state("c1")["status"] == "created"
    for bad in ("../escape", "a/b", ".."):
        result = rt.cmd("create", "--bundle", str(bundle), bad, check=False)
        assert result.returncode != 0
        assert "invalid container id" in result.stderr


def test_delete_force_removes_a_running_container_and_its_cgroup(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    cgroup: dict[str, str] = {}

    def edit(config: dict[str, Any]) -> None:
        cgroup["path"] = config["linux"]["cgroupsPath"]

    bundle = bundle_factory(["sh", "-c", "sleep 1000 & sleep 1000 & wait"], edit=edit)
    rt.cmd("create", "--bundle", str(bundle), "c1")
    rt.cmd("start", "c1")
    pid = rt.state("c1")["pid"]
    cgdir = Path("/sys/fs/cgroup/pids") / cgroup["path"].lstrip("/")
    wait_for(lambda: len((cgdir / "cgroup.procs").read_text().split()) == 3, "3 processes")
    rt.cmd("delete", "--force", "c1")
    assert (
        not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    )
    assert not cgdir.exists()
    assert not (rt.root / "c1").exists()


def test_kill_all_signals_every_process(rt: Runtime, bundle_factory: Callable[..., Path]) -> None:
    bundle = bundle_factory(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    rt.cmd("create", "--bundle", str(bundle), "c1")
    rt.cmd("start", "c1")
    wait_for(lambda: len(json.loads(rt.cmd("ps", "--format", "json", "c1").stdout)) == 3, "3 pids")
    rt.cmd("kill", "--all", "c1", "KILL")
    wait_for(lambda: rt.state("c1")["status"] == "stopped", "the container to stop")


def test_exec_runs_in_the_containers_namespaces(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hostname"] = "inside"

    bundle = bundle_factory(["sleep", "1000"], edit=edit)
    rt.cmd("run", "--detach", "--bundle", str(bundle), "c1")
    result = rt.cmd(
        "exec", "c1", "sh", "-c", "hostname; ps -o pid,args | grep -c sleep; exit 4", check=False
    )
    assert result.returncode == 4
    lines = result.stdout.split()
    assert lines[0] == "inside"
    process = {
        "args": ["sh", "-c", "id -u; pwd"],
        "cwd": "/tmp",
        "user": {"uid": 1000, "gid": 1000},
        "env": ["PATH=/bin"],
    }
    (bundle / "process.json").write_text(json.dumps(process))
    out = rt.cmd("exec", "--process", str(bundle / "process.json"), "c1").stdout
    assert out.split() == ["1000", "/tmp"]


def test_exec_of_a_missing_program_fails_clearly(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    bundle = bundle_factory(["sleep", "1000"])
    rt.cmd("run", "--detach", "--bundle", str(bundle), "c1")
    result = rt.cmd("exec", "c1", "no-such-program", check=False)
    assert result.returncode != 0
    assert 'exec: "no-such-program": executable file not found in $PATH' in result.stderr


def test_create_fails_when_the_program_does_not_exist(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    bundle = bundle_factory(["/bin/missing"])
    result = rt.cmd("run", "--bundle", str(bundle), "c1", check=False)
    assert result.returncode != 0
    assert "/bin/missing" in result.stderr
    assert not (rt.root / "c1").exists()


def test_pause_and_resume_freeze_the_container(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    bundle = bundle_factory(["sleep", "1000"])
    rt.cmd("run", "--detach", "--bundle", str(bundle), "c1")
    pid = rt.state("c1")["pid"]
    rt.cmd("pause", "c1")
    assert rt.state("c1")["status"] == "paused"
    wait_for(lambda: Path(f"/proc/{pid}/stat").read_text().split()[2] in ("D", "S"), "frozen")
    rt.cmd("resume", "c1")
    assert rt.state("c1")["status"] == "running"


def test_update_changes_the_limits_of_a_running_container(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    mb = 1024 * 1024
    cgroup: dict[str, str] = {}

    def edit(config: dict[str, Any]) -> None:
        cgroup["path"] = config["linux"]["cgroupsPath"].lstrip("/")
        resources = config["linux"]["resources"]
        resources["memory"] = {"limit": 32 * mb, "swap": 64 * mb}
        resources["pids"] = {"limit": 10}

    def read(controller: str, v1_file: str, v2_file: str) -> str:
        top = Path("/sys/fs/cgroup")
        if (top / "cgroup.controllers").exists():  # cgroup v2 alone
            return (top / cgroup["path"] / v2_file).read_text().strip()
        return (top / controller / cgroup["path"] / v1_file).read_text().strip()

    bundle = bundle_factory(["sleep", "1000"], edit=edit)
    rt.cmd("run", "--detach", "--bundle", str(bundle), "c1")

    change = {"memory": {"limit": 48 * mb}, "pids": {"limit": 20}}
    rt.cmd("update", "--resources", "-", "c1", input=json.dumps(change).encode())
    rt.cmd("update", "--cpu-period", "60000", "--cpu-quota", "30000", "c1")
    too_much = rt.cmd(
        "update", "-r", "-", "c1", input=b'{"memory": {"limit": 134217728}}', check=False
    )

    assert read("memory", "memory.limit_in_bytes", "memory.max") == str(48 * mb)
    assert read("pids", "pids.max", "pids.max") == "20"
    assert read("cpu", "cpu.cfs_quota_us", "cpu.max").split()[0] == "30000"
    assert read("cpu", "cpu.cfs_period_us", "cpu.max").split()[-1] == "60000"
    assert too_much.returncode == 1
    assert "must not be below linux.resources.memory.limit (134217728)" in too_much.stderr
    saved = json.loads((rt.root / "c1" / "state.json").read_text())["config"]["linux"]
    assert saved["resources"]["memory"] == {"limit": 48 * mb, "swap": 64 * mb}
    rt.cmd("kill", "c1", "KILL")
    wait_for(lambda: rt.state("c1")["status"] == "stopped", "the container to stop")
    stopped = rt.cmd("update", "--pids-limit", "5", "c1", check=False)
    assert (stopped.returncode, stopped.stderr) == (
        1,
        "moor-runtime: container not running: c1\n",
    )


def test_list_and_pid_file(
    rt: Runtime, bundle_factory: Callable[..., Path], tmp_path: Path
) -> None:
    bundle = bundle_factory(["sleep", "1000"])
    pid_file = tmp_path / "pid"
    rt.cmd("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1")
    listed = json.loads(rt.cmd("list", "--format", "json").stdout)
    assert [(c["id"], c["status"], c["pid"]) for c in listed] == [
        ("c1", "created", int(pid_file.read_text()))
    ]
    table = rt.cmd("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]


def test_preserve_fds_passes_exactly_those_descriptors(
    rt: Runtime, bundle_factory: Callable[..., Path], tmp_path: Path
) -> None:
    bundle = bundle_factory(["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo hi >&3"])
    out = tmp_path / "fd3"
    # fd 3 is opened by a shell for the runtime alone: the test process's own
    # descriptors (pytest's capture among them) stay untouched.
    result = subprocess.run(
        [
            "sh",
            "-c",
            f'exec 3>"{out}"; exec "$@"',
            "sh",
            moor_runtime(),
            "--root",
            str(rt.root),
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            str(bundle),
            "c1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # ls itself holds one more descriptor while it lists the directory.
    assert result.stdout.split()[:4] == ["0", "1", "2", "3"]
    assert len(result.stdout.split()) == 5
    assert out.read_text() == "hi\n"


def _console_server(path: Path) -> tuple[socket.socket, list[int]]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[int] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
            received.extend(fds)

    threading.Thread(target=accept, daemon=True).start()
    return server, received


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    path = tmp_path / "console.sock"
    server, received = _console_server(path)
    try:
        yield path, received
    finally:
        server.close()
        for fd in received:
            os.close(fd)


def test_terminal_master_goes_to_the_console_socket(
    rt: Runtime, bundle_factory: Callable[..., Path], console: tuple[Path, list[int]]
) -> None:
    path, received = console

    def edit(config: dict[str, Any]) -> None:
        config["process"]["terminal"] = True
        config["process"]["consoleSize"] = {"height": 30, "width": 100}

    bundle = bundle_factory(["sh", "-c", "tty; stty size; sleep 1000"], edit=edit)
    rt.cmd("create", "--bundle", str(bundle), "--console-socket", str(path), "c1")
    wait_for(lambda: bool(received), "the pty master")
    rt.cmd("start", "c1")
    master = received[0]
    output = b""
    deadline = time.monotonic() + 10
    while b"100" not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            output += os.read(master, 1024)
    assert b"/dev/pts/0" in output
    assert b"30 100" in output


def test_oom_kill_is_reported(rt: Runtime, bundle_factory: Callable[..., Path]) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["memory"] = {"limit": 16 * 1024 * 1024}

    # Holds ~64 MiB in one shell variable: over the 16 MiB limit.
    bundle = bundle_factory(
        ["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo $x | wc -c"],
        edit=edit,
    )
    rt.cmd("create", "--bundle", str(bundle), "c1")
    events = subprocess.Popen(
        [moor_runtime(), "--root", str(rt.root), "events", "--interval", "0.1", "c1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        rt.cmd("start", "c1")
        line = events.stdout.readline() if events.stdout else ""
        assert json.loads(line) == {"type": "oom", "id": "c1"}
    finally:
        events.send_signal(signal.SIGTERM)
        events.wait()
        if events.stdout:
            events.stdout.close()
