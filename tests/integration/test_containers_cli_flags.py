"""Every flag and command of the `moor` container CLI that test_containers_cli.py and
test_containers_engine.py leave out, driven as a user would (a `moor` process per
command) and checked by what it does: inside the container (its environment, mounts,
cgroup files, capabilities, /proc/self/status), on the host (bind mounts, cgroup and
freezer files, log files), and in what `ps`, `inspect`, `logs` and `events` then say.

One daemon for the module; each test removes what it made, even when it fails."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import Daemon, running_daemon

pytestmark = pytest.mark.root

CGROUP = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("cliflags") / "moor", busybox=True) as d:
        yield d


# --------------------------------------------------------------------------- helpers


class Moor:
    """`moor -H <the module's daemon>`, remembering what a test creates so that its
    finalizer can remove it (containers with their anonymous volumes, then named
    volumes, then images)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.images: list[str] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "moorage.cli.main", "-H", self.daemon.host, *args]

    def __call__(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"moor {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')}"
            )
        return result

    def out(self, *args: str, **kwargs: Any) -> str:
        return self(*args, **kwargs).stdout.decode()

    def fails(self, *args: str, code: int, **kwargs: Any) -> str:
        """Runs a command that must fail with exit status ``code``; its stderr."""
        result = self(*args, check=False, **kwargs)
        stderr = result.stderr.decode(errors="replace")
        assert result.returncode == code, (
            f"moor {' '.join(args)}: exit {result.returncode}, expected {code}; "
            f"stdout {result.stdout!r}, stderr {stderr!r}"
        )
        return stderr

    def name(self, prefix: str) -> str:
        """A fresh container name, removed (with -f -v) when the test ends."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.containers.append(name)
        return name

    def volume(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.volumes.append(name)
        return name

    def image(self, prefix: str) -> str:
        ref = f"{prefix}-{uuid.uuid4().hex[:6]}:1"
        self.images.append(ref)
        return ref

    def inspect(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.out("container", "inspect", name))[0]
        return info

    def state(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect(name)["State"]
        return state

    def logs(self, name: str) -> str:
        return self.out("logs", name)

    def all_ids(self) -> set[str]:
        return set(self.out("ps", "-a", "-q", "--no-trunc").split())

    def volume_names(self) -> set[str]:
        return set(self.out("volume", "ls", "-q").split())

    def cleanup(self) -> None:
        if self.containers:
            self("rm", "-f", "-v", *self.containers, check=False)
        for volume in self.volumes:
            self("volume", "rm", "-f", volume, check=False)
        for image in self.images:
            self("rmi", "-f", image, check=False)


@pytest.fixture
def moor(daemon: Daemon) -> Iterator[Moor]:
    m = Moor(daemon)
    try:
        yield m
    finally:
        m.cleanup()


def _await(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(0.05)


def _stays(condition: Callable[[], bool], what: str, seconds: float = 1.5) -> None:
    """``condition`` holds throughout a short window: for what must *not* happen
    (a restart that must not come), which no event announces."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), f"no longer true: {what}"
        time.sleep(0.1)


def _cgroup_file(moor: Moor, cid: str, *candidates: str) -> Path:
    """The first existing host file among ``candidates`` (paths under /sys/fs/cgroup
    with ``{cg}`` for the container's cgroup, the daemon's parent and its id): cgroup
    v1 and v2 lay them out differently."""
    cgroup = moor.daemon.cgroup_parent.strip("/") + "/" + cid
    for candidate in candidates:
        path = CGROUP / candidate.format(cg=cgroup)
        if path.exists():
            return path
    raise AssertionError(f"none of the cgroup files {candidates} exists for {cid[:12]}")


class LineReader:
    """Lines from a process's pipe, each awaited with a deadline (never a blocking read)."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.buffer = b""
        self.seen = b""

    def until(self, wanted: bytes, timeout: float = 30.0) -> bytes:
        """Everything read up to and including the first line containing ``wanted``."""
        deadline = time.monotonic() + timeout
        while True:
            start = self.buffer.find(wanted)
            if start != -1:
                end = self.buffer.find(b"\n", start)
                if end != -1:
                    line, self.buffer = self.buffer[: end + 1], self.buffer[end + 1 :]
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {wanted!r} in {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 65536)
                if not data:
                    raise AssertionError(f"stream ended without {wanted!r}: {self.seen!r}")
                self.buffer += data
                self.seen += data


def _in_pty(moor: Moor, *args: str, rows: int = 33, cols: int = 97) -> tuple[int, bytes]:
    """Runs `moor args` with a pseudo-terminal of rows x cols as its stdin, stdout and
    stderr (as in an interactive shell); its exit status and everything it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        proc = subprocess.Popen(
            moor.command(*args), stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
    finally:
        os.close(slave)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([master], [], [], max(left, 0))
            if not ready:
                proc.kill()
                raise AssertionError(f"moor {' '.join(args)} hung on a tty: {output!r}")
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the last holder of the slave side is gone
                break
            if not data:
                break
            output += data
        return proc.wait(timeout=30), output
    finally:
        os.close(master)


def _decimal_bytes(text: str) -> int:
    """``2.13MB`` (docker's decimal human sizes) in bytes."""
    match = re.fullmatch(r"([\d.]+)([kMGT]?B)", text)
    assert match, f"not a size: {text!r}"
    scale = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}[match.group(2)]
    return int(float(match.group(1)) * scale)


def _run_d(moor: Moor, name: str, *args: str) -> str:
    """`moor run -d --name NAME ARGS...`; the new container's id."""
    cid = moor.out("run", "-d", "--name", name, *args).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    return cid


def _running(moor: Moor, name: str) -> Callable[[], bool]:
    return lambda: bool(moor.state(name)["Running"])


# --------------------------------------------------------------------------- run: the process


def test_environment_from_flags_files_and_the_client(moor: Moor, tmp_path: Path) -> None:
    env_file = tmp_path / "env.list"
    env_file.write_text(
        "# a comment, then a blank line\n"
        "\n"
        "FROM_FILE=file value with spaces\n"
        "   INDENTED=kept\n"
        "OVERRIDDEN=from the file\n"
        "FROM_CLIENT_IN_FILE\n"
        "UNSET_IN_CLIENT\n"
    )
    client_env = {
        **os.environ,
        "FROM_CLIENT": "client says hi",
        "FROM_CLIENT_IN_FILE": "file asked the client",
    }
    client_env.pop("UNSET_IN_CLIENT", None)
    client_env.pop("ALSO_UNSET", None)
    result = moor(
        "run",
        "--rm",
        "--env-file",
        str(env_file),
        "-e",
        "PLAIN=v1",
        "-e",
        "FROM_CLIENT",
        "-e",
        "ALSO_UNSET",
        "-e",
        "OVERRIDDEN=from the flag",
        "busybox",
        "env",
        env=client_env,
    )
    env = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert env["PLAIN"] == "v1", "-e K=V"
    assert env["FROM_CLIENT"] == "client says hi", "-e K takes K from the client's environment"
    assert "ALSO_UNSET" not in env, "-e K with K unset on the client must be left out"
    assert env["FROM_FILE"] == "file value with spaces", "--env-file values are verbatim"
    assert env["INDENTED"] == "kept", "--env-file: leading whitespace is not part of the key"
    assert env["FROM_CLIENT_IN_FILE"] == "file asked the client", "a bare key in --env-file"
    assert "UNSET_IN_CLIENT" not in env, "a bare key unset on the client is left out"
    assert env["OVERRIDDEN"] == "from the flag", "-e wins over --env-file"
    assert not any(k.startswith("#") for k in env), "--env-file comments must be skipped"


def test_workdir_and_user(moor: Moor) -> None:
    assert moor.out("run", "--rm", "-w", "/tmp", "busybox", "pwd") == "/tmp\n"
    # A missing working directory is created, as docker does.
    assert moor.out("run", "--rm", "-w", "/no/such/dir", "busybox", "pwd") == "/no/such/dir\n"
    by_name = moor.out("run", "--rm", "-u", "nobody", "busybox", "sh", "-c", "id -u; id -g")
    assert by_name.split() == ["65534", "65534"], "-u nobody: its uid and primary gid"
    by_ids = moor.out("run", "--rm", "-u", "1000:1001", "busybox", "sh", "-c", "id -u; id -g")
    assert by_ids.split() == ["1000", "1001"], "-u uid:gid"
    denied = moor("run", "--rm", "-u", "nobody", "busybox", "touch", "/root/x", check=False)
    assert denied.returncode != 0, "nobody must not write to /root"
    assert b"Permission denied" in denied.stderr


def test_commit_with_changes_and_entrypoint_overrides(moor: Moor) -> None:
    name = moor.name("src")
    _run_d(moor, name, "busybox", "sleep", "300")
    moor("exec", name, "sh", "-c", "echo committed content > /hello")
    with_cmd = moor.image("withcmd")
    image_id = moor.out(
        "commit", "-c", 'CMD ["cat","/hello"]', "-m", "a message", "-a", "A. Author", name, with_cmd
    ).strip()
    assert image_id.startswith("sha256:")
    assert moor.out("run", "--rm", with_cmd) == "committed content\n", "the committed CMD"
    meta = moor.out("inspect", "--format", "{{.Comment}}|{{.Author}}", with_cmd).strip()
    assert meta == "a message|A. Author", "commit -m/-a as image metadata (inspect's image side)"

    with_ep = moor.image("withep")
    moor("commit", "-c", 'ENTRYPOINT ["echo","from-entrypoint"]', name, with_ep)
    assert moor.out("run", "--rm", with_ep, "arg") == "from-entrypoint arg\n"
    assert moor.out("run", "--rm", "--entrypoint", "cat", with_ep, "/hello") == (
        "committed content\n"
    ), "--entrypoint replaces the image's"
    assert moor.out("run", "--rm", "--entrypoint", "", with_ep, "echo", "no entrypoint") == (
        "no entrypoint\n"
    ), '--entrypoint "" resets the image\'s entrypoint'


def test_interactive_detached_and_auto_removed(moor: Moor) -> None:
    piped = moor("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo end", input=b"a\nb\n")
    assert piped.stdout == b"a\nb\nend\n", "-i: stdin piped in, and its end closes the input"
    not_interactive = moor("run", "--rm", "busybox", "sh", "-c", "cat; echo end", input=b"x\n")
    assert not_interactive.stdout == b"end\n", "without -i the container's stdin is empty"

    name = moor.name("gone")
    cid = _run_d(moor, name, "--rm", "busybox", "sh", "-c", "exit 0")
    _await(lambda: cid not in moor.all_ids(), "a -d --rm container to be removed after its exit")
    assert moor.fails("container", "inspect", name, code=1).count("No such container") == 1


def test_tty_with_a_pseudo_terminal(moor: Moor) -> None:
    name = moor.name("tty")
    code, output = _in_pty(
        moor, "run", "-it", "--name", name, "busybox", "sh", "-c", "tty; stty size; exit 3"
    )
    text = output.decode(errors="replace")
    assert code == 3, f"run -it: the container's exit status, got {code}: {text!r}"
    assert "/dev/pts/0\r\n" in text, f"run -it: stdin is the container's pty: {text!r}"
    assert moor.inspect(name)["Config"]["Tty"] is True

    box = moor.name("ttyexec")
    _run_d(moor, box, "busybox", "sleep", "300")
    code, exec_output = _in_pty(moor, "exec", "-it", box, "sh", "-c", "tty; stty size; exit 4")
    exec_text = exec_output.decode(errors="replace")
    assert code == 4, f"exec -it: the command's exit status, got {code}: {exec_text!r}"
    assert re.search(r"/dev/pts/\d+\r\n", exec_text), f"exec -it has a pty: {exec_text!r}"

    # The terminal's size is the caller's from the first instruction on: docker sends it
    # as HostConfig.ConsoleSize (and the exec's ConsoleSize), and dockerd puts it in the
    # OCI spec's process.consoleSize, so `stty size` never sees 0 0.
    assert "33 97\r\n" in text, f"run -it: the pty is not the caller's 33x97: {text!r}"
    assert "33 97\r\n" in exec_text, f"exec -it: the pty is not 33x97: {exec_text!r}"


def test_hostname_and_labels(moor: Moor) -> None:
    name = moor.name("labelled")
    other = moor.name("unlabelled")
    key = f"suite{uuid.uuid4().hex[:6]}"
    _run_d(moor, name, "--hostname", "myhost", "--label", f"{key}=v", "-l", "tier=web", "busybox")
    _run_d(moor, other, "--label", f"{key}=other", "busybox", "sleep", "300")
    listed = moor.out("ps", "-a", "--filter", f"label={key}=v", "--format", "{{.Names}}")
    assert listed.split() == [name], "ps --filter label=k=v"
    either = moor.out("ps", "-a", "--filter", f"label={key}", "--format", "{{.Names}}")
    assert sorted(either.split()) == sorted([name, other]), "ps --filter label=k"
    assert moor.inspect(name)["Config"]["Labels"] == {key: "v", "tier": "web"}
    assert moor.inspect(name)["Config"]["Hostname"] == "myhost"
    container = moor.name("host")
    hostname = moor.out(
        "run", "--name", container, "--hostname", "myhost", "busybox", "sh", "-c",
        "hostname; cat /etc/hostname",
    )  # fmt: skip
    assert hostname.split() == ["myhost", "myhost"], "--hostname: uname and /etc/hostname"


# --------------------------------------------------------------------------- run: filesystems


def test_read_only_root_with_a_tmpfs(moor: Moor) -> None:
    script = (
        "touch /x 2>&1; echo touch-root=$?; touch /tmp/ok && echo touch-tmp=0; "
        "mount | grep -E ' on / | on /tmp '"
    )
    out = moor.out("run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c", script)
    assert "Read-only file system" in out, out
    assert "touch-root=1" in out, f"the root must refuse writes: {out}"
    assert "touch-tmp=0" in out, f"--tmpfs /tmp must be writable: {out}"
    root_line = next(line for line in out.splitlines() if " on / " in line)
    tmp_line = next(line for line in out.splitlines() if " on /tmp " in line)
    assert "(ro," in root_line, root_line
    assert tmp_line.startswith("tmpfs on /tmp type tmpfs (rw,"), tmp_line


def test_named_volume_read_write_and_read_only(moor: Moor) -> None:
    volume = moor.volume("named")
    moor("run", "--rm", "-v", f"{volume}:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert volume in moor.volume_names(), "-v NAME:/path creates the volume"
    read_only = moor(
        "run", "--rm", "-v", f"{volume}:/data:ro", "busybox", "sh", "-c",
        "cat /data/f; echo more > /data/g", check=False,
    )  # fmt: skip
    assert read_only.stdout == b"kept\n", "the data outlives the first container"
    assert read_only.returncode != 0
    assert b"Read-only file system" in read_only.stderr
    listing = moor.out("run", "--rm", "-v", f"{volume}:/data", "busybox", "ls", "/data")
    assert listing.split() == ["f"], "a write through :ro must leave nothing"


def test_bind_mounts_both_ways_and_read_only(moor: Moor, tmp_path: Path) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    (host / "from-host").write_text("written on the host\n")
    out = moor.out(
        "run", "--rm", "-v", f"{host}:/b", "busybox", "sh", "-c",
        "cat /b/from-host; echo written inside > /b/from-container",
    )  # fmt: skip
    assert out == "written on the host\n", "a host file is seen inside"
    assert (host / "from-container").read_text() == "written inside\n", "and back"

    refused = moor(
        "run", "--rm", "-v", f"{host}:/b:ro", "busybox", "sh", "-c",
        "cat /b/from-host; echo no > /b/refused", check=False,
    )  # fmt: skip
    assert refused.stdout == b"written on the host\n"
    assert refused.returncode != 0, "a write through a :ro bind must fail"
    assert b"Read-only file system" in refused.stderr
    assert not (host / "refused").exists(), "a :ro bind must not be written"


def test_anonymous_volume_is_listed_and_removed_with_rm_v(moor: Moor) -> None:
    before = moor.volume_names()
    name = moor.name("anon")
    cid = _run_d(moor, name, "-v", "/anon", "busybox", "sh", "-c", "echo a > /anon/f; cat /anon/f")
    code = moor.out("wait", name).strip()
    mounts = moor.inspect(name)["Mounts"]
    created = moor.volume_names() - before
    assert code == "0", (
        f"-v /anon: the container cannot write to /anon (exit {code}, logs "
        f"{moor.logs(name)!r}); inspect Mounts {mounts}, new volumes {created}"
    )
    assert len(mounts) == 1, mounts
    assert mounts[0]["Type"] == "volume", mounts
    assert mounts[0]["Destination"] == "/anon", mounts
    assert created == {mounts[0]["Name"]}, f"volume ls must show it: {created}"
    moor("rm", "-v", cid)
    assert moor.volume_names() == before, "rm -v removes the anonymous volume"


def test_mount_flag_bind_volume_and_tmpfs(moor: Moor, tmp_path: Path) -> None:
    host = tmp_path / "src"
    host.mkdir()
    (host / "h").write_text("host file\n")
    volume = moor.volume("mounted")
    script = (
        "cat /b/h; echo v > /v/f; echo t > /t/f; mount | grep -E ' on /(b|v|t) '; "
        "echo x > /b/refused"
    )
    result = moor(
        "run", "--rm",
        "--mount", f"type=bind,source={host},target=/b,readonly",
        "--mount", f"type=volume,source={volume},target=/v",
        "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
        "busybox", "sh", "-c", script, check=False,
    )  # fmt: skip
    out = result.stdout.decode()
    assert out.startswith("host file\n"), out
    mounts = {line.split()[2]: line for line in out.splitlines()[1:]}
    assert "(ro," in mounts["/b"], f"type=bind,readonly: {mounts}"
    assert "(rw," in mounts["/v"], f"type=volume: {mounts}"
    assert mounts["/t"].startswith("tmpfs on /t type tmpfs (rw,"), mounts
    assert "size=1024k" in mounts["/t"], f"tmpfs-size=1m: {mounts['/t']}"
    assert b"Read-only file system" in result.stderr, "a readonly bind refuses writes"
    assert not (host / "refused").exists()
    assert volume in moor.volume_names()
    kept = moor.out(
        "run", "--rm", "--mount", f"source={volume},target=/v", "busybox", "cat", "/v/f"
    )
    assert kept == "v\n", "the volume keeps what was written (type defaults to volume)"


def test_log_rotation_with_log_opts(moor: Moor) -> None:
    name = moor.name("rotated")
    script = "i=0; while [ $i -lt 400 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done"
    _run_d(
        moor, name, "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox", "sh", "-c",
        script,
    )  # fmt: skip
    assert moor.out("wait", name).strip() == "0"
    info = moor.inspect(name)
    assert info["HostConfig"]["LogConfig"]["Config"] == {"max-size": "1k", "max-file": "2"}
    log_path = Path(info["LogPath"])
    files = sorted(p.name for p in log_path.parent.iterdir() if p.name.startswith(log_path.name))
    assert files == [log_path.name, f"{log_path.name}.1"], f"max-file=2 keeps two: {files}"
    for f in files:
        size = (log_path.parent / f).stat().st_size
        assert size <= 1024 + 200, f"{f} is {size} bytes with max-size=1k"
    tail = moor.logs(name).splitlines()
    assert tail[-1] == "line-399-padding-padding-padding", "the newest lines are kept"
    assert "line-0-padding-padding-padding" not in tail, "the oldest ones rotated away"


# --------------------------------------------------------------------------- run: limits


def test_memory_cpu_and_pids_limits_with_stats_and_top(moor: Moor) -> None:
    name = moor.name("limited")
    cid = _run_d(
        moor, name, "-m", "64m", "--cpus", "0.5", "--pids-limit", "20", "busybox", "sleep", "300"
    )
    host = moor.inspect(name)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (64 << 20, 500_000_000, 20)
    inside = moor.out(
        "exec", name, "sh", "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    )  # fmt: skip
    assert inside.strip() == str(64 << 20), "-m 64m, seen from inside the container"
    memory = _cgroup_file(moor, cid, "{cg}/memory.max", "memory/{cg}/memory.limit_in_bytes")
    assert memory.read_text().strip() == str(64 << 20), f"-m 64m in {memory}"
    cpu_max = CGROUP / moor.daemon.cgroup_parent.strip("/") / cid / "cpu.max"
    if cpu_max.exists():
        assert cpu_max.read_text().split() == ["50000", "100000"], "--cpus 0.5"
    else:
        quota = _cgroup_file(moor, cid, "cpu/{cg}/cpu.cfs_quota_us")
        period = quota.with_name("cpu.cfs_period_us")
        ratio = int(quota.read_text()) / int(period.read_text())
        assert ratio == 0.5, f"--cpus 0.5: quota/period is {ratio}"
    pids = _cgroup_file(moor, cid, "{cg}/pids.max", "pids/{cg}/pids.max")
    assert pids.read_text().strip() == "20", f"--pids-limit 20 in {pids}"

    # 50 background sleeps cannot all start under a limit of 20 processes.
    # (Their output goes elsewhere: the exec's stream would otherwise wait for them.)
    bomb_script = (
        "for i in $(seq 50); do sleep 30 </dev/null >/dev/null 2>&1 & done; echo all-started"
    )
    bomb = moor("exec", name, "sh", "-c", bomb_script, check=False)
    assert b"all-started" not in bomb.stdout, "--pids-limit 20 let 50 processes start"
    assert b"can't fork" in bomb.stderr, bomb.stderr

    stats = moor.out("stats", "--no-stream", name).splitlines()
    assert stats[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"], stats
    row = stats[1]
    assert row.startswith(f"{cid[:12]}   {name}"), row
    assert re.search(r"[\d.]+[KMG]?i?B / 64MiB", row), f"MEM USAGE / LIMIT of -m 64m: {row}"
    template = moor.out("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", name)
    assert template.startswith(f"{name} "), template
    assert template.strip().endswith("/ 64MiB"), template

    top = moor.out("top", name).splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"], top
    assert any(line.rstrip().endswith("sleep 300") for line in top[1:]), top
    custom = moor.out("top", name, "-o", "pid,comm").splitlines()
    assert custom[0].split() == ["PID", "COMMAND"], custom


def test_ulimits(moor: Moor) -> None:
    out = moor.out(
        "run", "--rm", "--ulimit", "nofile=100:200", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"
    )
    assert out.split() == ["100", "200"], "--ulimit nofile=soft:hard"


# --------------------------------------------------------------------------- run: security


def _cap_eff(text: str) -> int:
    match = re.search(r"^CapEff:\s*([0-9a-f]+)$", text, re.MULTILINE)
    assert match, text
    return int(match.group(1), 16)


def test_capabilities(moor: Moor) -> None:
    cap_chown, cap_net_admin = 1 << 0, 1 << 12
    script = "grep CapEff /proc/self/status; chown nobody /tmp; echo chown=$?; ip link set lo down"
    default = moor("run", "--rm", "busybox", "sh", "-c", script, check=False)
    changed = moor(
        "run", "--rm", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN", "busybox", "sh", "-c",
        script, check=False,
    )  # fmt: skip
    default_caps, changed_caps = (
        _cap_eff(default.stdout.decode()),
        _cap_eff(changed.stdout.decode()),
    )
    assert default_caps & cap_chown, f"CHOWN is a default: {default_caps:#x}"
    assert not default_caps & cap_net_admin, f"NET_ADMIN is not: {default_caps:#x}"
    assert not changed_caps & cap_chown, f"--cap-drop CHOWN: {changed_caps:#x}"
    assert changed_caps & cap_net_admin, f"--cap-add NET_ADMIN: {changed_caps:#x}"
    assert changed_caps == (default_caps | cap_net_admin) & ~cap_chown, "nothing else changes"
    assert b"chown=0" in default.stdout, default.stderr
    assert b"chown=1" in changed.stdout, "chown must fail without CAP_CHOWN"
    assert b"Operation not permitted" in changed.stderr
    assert default.returncode != 0, "ip link set without NET_ADMIN must fail"
    assert changed.returncode == 0, f"ip link set with NET_ADMIN: {changed.stderr!r}"


def test_security_opts(moor: Moor, tmp_path: Path) -> None:
    status = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"
    default = moor.out("run", "--rm", "busybox", "sh", "-c", status).split()
    assert default == ["NoNewPrivs:", "0", "Seccomp:", "2"], default
    opts = moor.out(
        "run", "--rm", "--security-opt", "no-new-privileges", "--security-opt",
        "seccomp=unconfined", "busybox", "sh", "-c", status,
    ).split()  # fmt: skip
    assert opts == ["NoNewPrivs:", "1", "Seccomp:", "0"], opts

    profile = tmp_path / "no-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
                ],
            }
        )
    )
    denied = moor(
        "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "sh", "-c",
        "touch /tmp/file && echo touch-ok; mkdir /tmp/dir", check=False,
    )  # fmt: skip
    assert denied.stdout == b"touch-ok\n", "the profile allows what it does not name"
    assert denied.returncode != 0
    assert b"Operation not permitted" in denied.stderr, "mkdir fails with EPERM"


# --------------------------------------------------------------------------- stopping


def test_init_forwards_sigterm_and_reaps(moor: Moor) -> None:
    with_init = moor.name("init")
    _run_d(moor, with_init, "--init", "busybox", "sleep", "300")
    processes = moor.out("exec", with_init, "ps", "-o", "pid,args").splitlines()
    pid1 = next(line for line in processes if line.split()[0] == "1")
    assert re.search(r"(docker-init|tini)", pid1), f"PID 1 is the init: {processes}"
    assert any(line.split()[1:] == ["sleep", "300"] for line in processes[1:]), processes
    moor("stop", "-t", "10", with_init, timeout=60)
    assert moor.state(with_init)["ExitCode"] == 143, "the init passed SIGTERM on to sleep"

    without = moor.name("noinit")
    _run_d(moor, without, "busybox", "sleep", "300")
    moor("stop", "-t", "1", without)
    assert moor.state(without)["ExitCode"] == 137, "sleep as PID 1 ignores SIGTERM: killed"


def test_stop_signal_and_stop_timeout(moor: Moor) -> None:
    volume = moor.volume("marker")
    name = moor.name("trapper")
    script = 'trap "echo usr1 > /m/marker; exit 7" USR1; echo ready; while true; do sleep 0.1; done'
    _run_d(
        moor, name, "--stop-signal", "SIGUSR1", "-v", f"{volume}:/m", "busybox", "sh", "-c", script
    )
    _await(lambda: moor.logs(name) == "ready\n", "the trap to be set")
    assert moor.inspect(name)["Config"]["StopSignal"] == "SIGUSR1"
    assert moor.out("stop", "-t", "60", name).strip() == name
    assert moor.state(name)["ExitCode"] == 7, "stopped by its trap on SIGUSR1, not killed"
    marker = moor.out("run", "--rm", "-v", f"{volume}:/m", "busybox", "cat", "/m/marker")
    assert marker == "usr1\n"

    quick = moor.name("quick")
    _run_d(moor, quick, "--stop-timeout", "1", "busybox", "sleep", "300")
    assert moor.inspect(quick)["Config"]["StopTimeout"] == 1
    # Docker's default is 10 s; the container's own 1 s ends this well before.
    moor("stop", quick, timeout=8)
    assert moor.state(quick)["ExitCode"] == 137


def test_restart_always_comes_back_until_stopped(moor: Moor) -> None:
    name = moor.name("always")
    _run_d(moor, name, "--restart", "always", "busybox", "sleep", "300")
    first = moor.state(name)["Pid"]
    os.kill(first, signal.SIGKILL)  # the init dies, as in a crash
    _await(
        lambda: moor.inspect(name)["RestartCount"] == 1
        and moor.state(name)["Pid"] not in (0, first),
        "--restart always to bring it back",
    )
    assert "Up" in moor.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    second = moor.state(name)["Pid"]
    os.kill(second, signal.SIGKILL)
    _await(lambda: moor.inspect(name)["RestartCount"] == 2, "a second restart")
    _await(_running(moor, name), "the second restart to be running")

    moor("stop", "-t", "1", name)
    _stays(lambda: not moor.state(name)["Running"], "a stopped --restart always container")
    assert moor.inspect(name)["RestartCount"] == 2

    # As dockerd: `kill` stops the restart policy too (it marks the exit as wanted).
    moor("start", name)
    moor("kill", name)
    _stays(lambda: not moor.state(name)["Running"], "a killed --restart always container")


def test_restart_unless_stopped(moor: Moor) -> None:
    name = moor.name("unless")
    _run_d(moor, name, "--restart", "unless-stopped", "busybox", "sleep", "300")
    assert moor.inspect(name)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    pid = moor.state(name)["Pid"]
    os.kill(pid, signal.SIGKILL)
    _await(lambda: moor.inspect(name)["RestartCount"] == 1, "--restart unless-stopped restarts")
    _await(_running(moor, name), "the restarted container to run")
    moor("stop", "-t", "0", name)
    _stays(lambda: not moor.state(name)["Running"], "a stopped unless-stopped container")


def test_health_checks_from_flags(moor: Moor) -> None:
    name = moor.name("health")
    _run_d(
        moor, name, "--health-cmd", "test ! -e /tmp/sick", "--health-interval", "1s",
        "--health-retries", "1", "busybox", "sleep", "300",
    )  # fmt: skip
    check = moor.inspect(name)["Config"]["Healthcheck"]
    assert check == {
        "Test": ["CMD-SHELL", "test ! -e /tmp/sick"],
        "Interval": 1_000_000_000,
        "Timeout": 0,
        "StartPeriod": 0,
        "StartInterval": 0,
        "Retries": 1,
    }, check

    def status() -> str:
        return moor.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}").strip()

    _await(lambda: status().endswith("(healthy)"), "ps to show (healthy)")
    moor("exec", name, "touch", "/tmp/sick")
    _await(lambda: status().endswith("(unhealthy)"), "ps to show (unhealthy)")
    assert moor.out("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}").split() == [
        name
    ]

    patient = moor.name("startperiod")
    _run_d(
        moor, patient, "--health-cmd", "false", "--health-interval", "200ms",
        "--health-retries", "1", "--health-start-period", "1h", "busybox", "sleep", "300",
    )  # fmt: skip

    def health() -> dict[str, Any]:
        result: dict[str, Any] = moor.state(patient)["Health"]
        return result

    _await(lambda: len(health()["Log"]) >= 3, "three failed probes in the start period")
    assert health()["Status"] == "starting", f"failures in --health-start-period: {health()}"
    assert health()["FailingStreak"] == 0, health()
    assert all(entry["ExitCode"] == 1 for entry in health()["Log"])


def test_name_conflict_is_refused(moor: Moor) -> None:
    name = moor.name("taken")
    cid = moor.out("create", "--name", name, "busybox", "true").strip()
    before = moor.all_ids()
    for command in ("create", "run"):
        stderr = moor.fails(command, "--name", name, "busybox", "true", code=125)
        assert f'The container name "/{name}" is already in use by container "{cid}"' in stderr
    assert moor.all_ids() == before, "a refused create leaves nothing"
    assert moor.state(name)["Status"] == "created", "the first one is untouched"


# --------------------------------------------------------------------------- other commands


def test_start_attached_and_interactive(moor: Moor) -> None:
    name = moor.name("startattach")
    moor("create", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; exit 4")
    started = moor("start", "-a", name, check=False)
    assert (started.returncode, started.stdout) == (4, b"out\n"), started
    assert started.stderr == b"err\n"
    again = moor("start", "-a", name, check=False)
    assert (again.returncode, again.stdout) == (4, b"out\n"), "start -a a second time"
    assert moor.logs(name) == "out\nout\n"

    reader = moor.name("startstdin")
    moor("create", "-i", "--name", reader, "busybox", "sh", "-c", 'read x; echo "got $x"; exit 2')
    piped = moor("start", "-i", reader, input=b"piped\n", check=False)
    assert (piped.returncode, piped.stdout) == (2, b"got piped\n"), piped


def test_restart_kill_signal_rename_and_rm(moor: Moor) -> None:
    name = moor.name("cycle")
    script = 'trap "echo got-usr2" USR2; echo started; while true; do sleep 0.1; done'
    _run_d(moor, name, "busybox", "sh", "-c", script)
    _await(lambda: moor.logs(name) == "started\n", "the trap to be set")
    before = moor.state(name)
    assert moor.out("restart", "-t", "1", name).strip() == name
    after = moor.state(name)
    assert after["Running"], after
    assert after["Pid"] != before["Pid"], "restart runs a new init"
    assert after["StartedAt"] > before["StartedAt"]
    _await(lambda: moor.logs(name) == "started\nstarted\n", "the restarted trap to be set")

    assert moor.out("kill", "-s", "USR2", name).strip() == name
    _await(lambda: moor.logs(name).endswith("got-usr2\n"), "kill -s USR2 to reach the trap")
    moor("kill", "-s", "SIGUSR2", name)
    _await(lambda: moor.logs(name).count("got-usr2") == 2, "kill -s SIGUSR2")
    assert moor.state(name)["Running"], "a trapped signal does not stop it"

    renamed = moor.name("renamed")
    moor("rename", name, renamed)
    assert moor.inspect(renamed)["Name"] == f"/{renamed}"
    assert moor.fails("container", "inspect", name, code=1).startswith("Error: No such container")

    stderr = moor.fails("rm", renamed, code=1)
    assert "cannot remove a running container" in stderr or "stop the container" in stderr
    moor("kill", renamed)
    assert moor.state(renamed)["ExitCode"] == 137
    moor("start", renamed)
    assert moor.out("rm", "-f", renamed).strip() == renamed, "rm -f removes a running one"
    assert moor.fails("inspect", renamed, code=1)
    assert moor.out("rm", "-f", renamed) == "", "rm -f of a gone container is not an error"


def test_pause_and_unpause(moor: Moor) -> None:
    name = moor.name("paused")
    cid = _run_d(moor, name, "busybox", "sh", "-c", "while true; do echo tick; sleep 0.1; done")
    freezer = _cgroup_file(moor, cid, "freezer/{cg}/freezer.state", "{cg}/cgroup.freeze")
    moor("pause", name)
    assert freezer.read_text().strip() in ("FROZEN", "1"), f"{freezer}: {freezer.read_text()}"
    status = moor.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    assert status.strip().endswith("(Paused)"), status
    assert moor.out("ps", "-q", "--filter", "status=paused").split() == [cid[:12]]
    assert moor.state(name)["Paused"] is True
    assert moor.fails("exec", name, "true", code=1), "exec in a paused container"
    moor("unpause", name)
    assert freezer.read_text().strip() in ("THAWED", "0"), f"{freezer}: {freezer.read_text()}"
    status = moor.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    assert not status.strip().endswith("(Paused)"), status
    size = len(moor.logs(name))
    _await(lambda: len(moor.logs(name)) > size, "ticks to go on after unpause")


def test_ps_flags(moor: Moor) -> None:
    key = f"ps{uuid.uuid4().hex[:6]}"
    three, zero, running = moor.name("three"), moor.name("zero"), moor.name("running")
    ids = {}
    for name, script in ((running, "sleep 300"), (three, "exit 3"), (zero, "exit 0")):
        ids[name] = _run_d(moor, name, "--label", f"ps={key}", "busybox", "sh", "-c", script)
    assert moor.out("wait", three, zero).split() == ["3", "0"], "wait prints each exit code"
    scope = ["--filter", f"label=ps={key}"]

    assert moor.out("ps", "-q", *scope).split() == [ids[running][:12]], "ps shows running only"
    assert set(moor.out("ps", "-a", "-q", *scope).split()) == {i[:12] for i in ids.values()}
    assert moor.out("ps", "-a", "-q", "--no-trunc", *scope).split() == [
        ids[zero],
        ids[three],
        ids[running],
    ], "--no-trunc, newest first"
    # -n and -l show containers in every state, as docker's do, without -a.
    last = moor.out("ps", "-n", "2", "--format", "{{.Names}}", *scope)
    assert last.split() == [zero, three], "-n 2: the two last created"
    latest = moor.out("ps", "-l", "--format", "{{.Names}}", *scope)
    assert latest.split() == [zero], "-l: the latest created"
    exited = moor.out("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}", *scope)
    assert sorted(exited.split()) == sorted([three, zero]), "--filter status=exited"
    by_code = moor.out(
        "ps", "-a", "--filter", "exited=3", "--format", "{{.Names}} {{.Status}}", *scope
    )
    assert re.fullmatch(rf"{three} Exited \(3\) .+ ago\n", by_code), by_code
    rows = [
        json.loads(line) for line in moor.out("ps", "-a", "--format", "json", *scope).splitlines()
    ]
    assert {r["Names"]: r["State"] for r in rows} == {
        three: "exited",
        zero: "exited",
        running: "running",
    }, rows
    commands = moor.out("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}", *scope)
    assert f'{ids[running]} "sh -c sleep 300"' in commands.splitlines(), commands
    sized = moor.out("ps", "-s", *scope).splitlines()
    assert sized[0].split()[-1] == "SIZE", sized
    assert "(virtual " in sized[1], sized


def test_logs_follow_tail_timestamps_since_until(moor: Moor) -> None:
    name = moor.name("logs")
    script = "echo l1; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo l2; echo l3"
    _run_d(moor, name, "busybox", "sh", "-c", script)
    follow = subprocess.Popen(moor.command("logs", "-f", name), stdout=subprocess.PIPE)
    try:
        assert LineReader(follow.stdout).until(b"l1") == b"l1\n", "logs -f streams"
        moor("exec", name, "touch", "/tmp/go")
        rest, _ = follow.communicate(timeout=30)
    finally:
        follow.kill()
        follow.wait()
        if follow.stdout is not None:
            follow.stdout.close()
    assert rest == b"l2\nl3\n", "logs -f follows the new lines"
    assert follow.returncode == 0, "and returns when the container exits"
    _await(lambda: not moor.state(name)["Running"], "the container to be recorded as exited")

    assert moor.out("logs", "--tail", "2", name) == "l2\nl3\n"
    assert moor.out("logs", "-n", "1", name) == "l3\n"
    stamped = moor.out("logs", "-t", name).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["l1", "l2", "l3"]
    stamps = [line.split(" ", 1)[0] for line in stamped]
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", stamp), stamp
    lines = ["l1\n", "l2\n", "l3\n"]
    for i, stamp in enumerate(stamps):
        # Both ends are inclusive, to the nanosecond, as dockerd compares them.
        since = moor.out("logs", "--since", stamp, name)
        assert since == "".join(lines[i:]), f"--since {stamp} (of line {i + 1}): {since!r}"
        until = moor.out("logs", "--until", stamp, name)
        assert until == "".join(lines[: i + 1]), f"--until {stamp} (of line {i + 1}): {until!r}"
    assert moor.out("logs", "--since", "1h", name) == "l1\nl2\nl3\n", "relative --since"
    assert moor.out("logs", "--until", "1h", name) == "", "nothing older than an hour"


def test_inspect_formats_and_types(moor: Moor) -> None:
    name = moor.name("inspected")
    moor("run", "--name", name, "busybox", "sh", "-c", "exit 6", check=False)
    assert moor.out("inspect", "--format", "{{.State.ExitCode}}", name) == "6\n"
    assert moor.out("inspect", "-f", "{{.Name}} {{.State.Status}}", name) == f"/{name} exited\n"
    both = json.loads(moor.out("inspect", name, "busybox"))
    assert [both[0]["Name"], both[1]["RepoTags"]] == [f"/{name}", ["busybox:latest"]]
    assert moor.out("inspect", "--type", "image", "-f", "{{.Os}}", "busybox") == "linux\n"
    stderr = moor.fails("inspect", "--type", "container", "busybox", code=1)
    assert "No such container: busybox" in stderr


def test_exec_flags(moor: Moor, tmp_path: Path) -> None:
    name = moor.name("exec")
    _run_d(moor, name, "-e", "FROM_RUN=r", "busybox", "sleep", "300")
    out = moor.out(
        "exec", "-u", "nobody", "-w", "/tmp", "-e", "A=b", name, "sh", "-c",
        'id -u; pwd; echo "$A $FROM_RUN"',
    )  # fmt: skip
    assert out.splitlines() == ["65534", "/tmp", "b r"], "exec -u -w -e"
    assert moor.out("exec", "-u", "1000:1001", name, "sh", "-c", "id -u; id -g").split() == [
        "1000",
        "1001",
    ]
    env_file = tmp_path / "exec.env"
    env_file.write_text("# comment\nFROM_FILE=f\n")
    from_file = moor.out("exec", "--env-file", str(env_file), name, "sh", "-c", "echo $FROM_FILE")
    assert from_file == "f\n", "exec --env-file"
    assert moor.out("exec", "-i", name, "cat", input=b"stdin\n") == "stdin\n"
    assert moor.out("exec", name, "cat", input=b"ignored\n") == "", "no -i: no stdin"
    detached = moor("exec", "-d", name, "sh", "-c", "echo detached > /tmp/det")
    assert detached.stdout == b"", "exec -d prints nothing"
    _await(
        lambda: moor("exec", name, "cat", "/tmp/det", check=False).stdout == b"detached\n",
        "exec -d to run its command",
    )
    code = moor("exec", name, "sh", "-c", "exit 9", check=False).returncode
    assert code == 9, "exec exits with the command's status"
    # dockerd records 127/126 as the exec's exit code when it cannot run its command
    # (translateContainerdStartErr), and the docker CLI exits with it; the error's text
    # comes down the stream, on stdout.
    missing = moor("exec", name, "nosuchcmd", check=False)
    assert missing.returncode == 127, missing
    assert b'exec: "nosuchcmd": executable file not found in $PATH' in missing.stdout
    moor.fails("exec", name, "/etc/passwd", code=126)


def test_attach_relays_output_and_signals(moor: Moor) -> None:
    name = moor.name("ticker")
    script = (
        'trap "echo got-usr2" USR2; i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done'
    )
    _run_d(moor, name, "busybox", "sh", "-c", script)
    attach = subprocess.Popen(
        moor.command("attach", name), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        lines = LineReader(attach.stdout)
        assert lines.until(b"tick-").startswith(b"tick-"), "attach relays the output"
        attach.send_signal(signal.SIGUSR2)  # --sig-proxy (the default) passes it on
        lines.until(b"got-usr2")
    finally:
        attach.kill()
        attach.wait()
        if attach.stdout is not None:
            attach.stdout.close()
    assert moor.state(name)["Running"], "the end of an attach leaves the container running"
    moor("stop", "-t", "0", name)
    stderr = moor.fails("attach", name, code=1)
    assert "You cannot attach to a stopped container" in stderr


def test_cp_directories_and_tar_streams(moor: Moor, tmp_path: Path) -> None:
    name = moor.name("cp")
    _run_d(moor, name, "busybox", "sleep", "300")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "sub" / "deep.txt").write_text("deep\n")
    moor("cp", str(tree), f"{name}:/copied")
    inside = moor.out("exec", name, "sh", "-c", "cat /copied/top.txt /copied/sub/deep.txt")
    assert inside == "top\ndeep\n", "a host directory copied in"

    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        info = tarfile.TarInfo("streamed/file")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"from tar\n"))
    moor("cp", "-", f"{name}:/tmp", input=stream.getvalue())
    assert moor.out("exec", name, "cat", "/tmp/streamed/file") == "from tar\n", "cp - CTR:DIR"

    archive = moor("cp", f"{name}:/copied", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = set(tar.getnames())
        member = tar.extractfile("copied/sub/deep.txt")
        assert member is not None
        assert member.read() == b"deep\n"
    assert {"copied", "copied/top.txt", "copied/sub", "copied/sub/deep.txt"} <= names, names

    back = tmp_path / "back"
    moor("cp", f"{name}:/copied", str(back))
    assert (back / "sub" / "deep.txt").read_text() == "deep\n", "a directory copied out"


def test_port_without_networking(moor: Moor) -> None:
    name = moor.name("port")
    _run_d(moor, name, "busybox", "sleep", "300")
    result = moor("port", name)
    assert (result.returncode, result.stdout) == (0, b""), "no published ports, no lines"
    stderr = moor.fails("port", name, "80", code=1)
    assert "no public port '80' published" in stderr


def test_events_since_until(moor: Moor) -> None:
    since = time.time()
    name = moor.name("evented")
    moor("run", "--rm", "--name", name, "busybox", "true")
    until = time.time()
    mine = ["--filter", f"container={name}", "--format", "{{.Type}} {{.Action}}"]
    wanted = ["create", "attach", "start", "die", "destroy"]  # dockerd's, for a run --rm
    # Whole seconds first (an --until in the current second waits for its end).
    seconds = ["--since", str(int(since)), "--until", str(int(until) + 1)]
    out = moor.out("events", *seconds, *mine, timeout=30)
    actions = [line.split()[1] for line in out.splitlines()]
    assert [a for a in actions if a in wanted] == wanted, f"events of a run --rm: {out!r}"
    assert all(line.startswith("container ") for line in out.splitlines()), out
    plain = moor.out("events", *seconds, timeout=30)
    mine_plain = [line for line in plain.splitlines() if f"name={name}" in line]
    assert [line.split()[2] for line in mine_plain] == wanted, plain

    # Then to the nanosecond, as dockerd compares an event's timeNano with the bounds.
    exact = ["--since", f"{since:.9f}", "--until", f"{until:.9f}"]
    out = moor.out("events", *exact, *mine, timeout=30)
    actions = [line.split()[1] for line in out.splitlines()]
    assert [a for a in actions if a in wanted] == wanted, (
        f"events --since {since:.9f} --until {until:.9f} (fractional seconds) lost "
        f"events of the same second: {out!r}"
    )


def test_container_prune_removes_only_stopped(moor: Moor) -> None:
    done, running = moor.name("done"), moor.name("alive")
    done_id = _run_d(moor, done, "busybox", "true")
    running_id = _run_d(moor, running, "busybox", "sleep", "300")
    moor("wait", done)
    out = moor.out("container", "prune", "-f")
    assert done_id in out.split(), out
    assert "Total reclaimed space:" in out
    ids = moor.all_ids()
    assert done_id not in ids, "prune removes the exited container"
    assert running_id in ids, "prune keeps the running container"


def test_diff_shows_added_changed_and_deleted(moor: Moor) -> None:
    name = moor.name("diff")
    _run_d(moor, name, "busybox", "sleep", "300")
    moor(
        "exec", name, "sh", "-c",
        "echo n > /newfile; echo extra >> /etc/passwd; rm /etc/group; mkdir /newdir",
    )  # fmt: skip
    changes = moor.out("diff", name).splitlines()
    assert sorted(changes) == sorted(
        ["A /newfile", "C /etc", "C /etc/passwd", "D /etc/group", "A /newdir"]
    ), changes


def test_system_df_and_prune(moor: Moor) -> None:
    running = moor.name("dfrun")
    _run_d(moor, running, "busybox", "sh", "-c", "echo x > /written; sleep 300")
    stopped = moor.name("dfstopped")
    stopped_id = _run_d(moor, stopped, "busybox", "true")
    moor("wait", stopped)
    rows = {line[:16].strip(): line[16:].split() for line in moor.out("system", "df").splitlines()}
    assert list(rows)[0] == "TYPE", rows
    images, containers = rows["Images"], rows["Containers"]
    assert int(images[1]) >= 1, f"Images ACTIVE: busybox is in use: {images}"
    assert int(containers[0]) >= 2, f"Containers TOTAL: {containers}"
    assert int(containers[1]) >= 1, f"Containers ACTIVE: {containers}"

    # A dangling image: an image a container uses, forcibly untagged.
    image = moor.image("dangling")
    image_id = moor.out("commit", running, image).strip()
    user = moor.name("imageuser")
    moor("create", "--name", user, image, "true")
    moor("rmi", "-f", image)
    dangling = moor.out("images", "--filter", "dangling=true", "-q", "--no-trunc").split()
    assert image_id in dangling, dangling

    out = moor.out("system", "prune", "-f")
    assert stopped_id in out, out
    assert "Deleted Images:" in out, out
    ids = moor.all_ids()
    assert stopped_id not in ids, "system prune removes stopped containers"
    assert moor.inspect(running)["State"]["Running"], "and keeps running ones"
    assert moor.fails("image", "inspect", image_id, code=1), "and removes dangling images"
    assert moor.out("image", "inspect", "busybox"), "but not images in use"

    # What df says of the images' space, in the units `moor images` uses.
    problems = []
    busybox_size = _decimal_bytes(moor.out("images", "--format", "{{.Size}}", "busybox").strip())
    df_images = moor.out("system", "df").splitlines()[1]
    images_total = _decimal_bytes(df_images[16:].split()[2])
    if images_total < busybox_size:
        problems.append(
            f"system df: Images SIZE {images_total} B is less than busybox's own size "
            f"{busybox_size} B in `moor images` (compressed blobs counted?): {df_images!r}"
        )
    verbose = moor.out("system", "df", "-v")
    busybox = next(line for line in verbose.splitlines() if line.startswith("busybox "))
    if "N/A" in busybox:  # dockerd computes SharedSize for /system/df
        problems.append(f"system df -v: busybox's SHARED/UNIQUE SIZE unknown: {busybox!r}")
    assert not problems, "\n".join(problems)


def test_container_group_and_aliases(moor: Moor) -> None:
    name = moor.name("grouped")
    cid = _run_d(moor, name, "busybox", "sleep", "300")
    for alias in ("ls", "ps", "list"):
        listed = moor.out("container", alias, "--filter", f"name={name}", "--format", "{{.ID}}")
        assert listed.split() == [cid[:12]], f"container {alias}"
    assert moor.out("container", "inspect", "-f", "{{.Id}}", name).strip() == cid
    assert moor.out("container", "stop", "-t", "0", name).strip() == name
    assert moor.out("container", "remove", name).strip() == name
    assert cid not in moor.all_ids()


# --------------------------------------------------------------------------- bad input


def test_no_such_image_or_container(moor: Moor) -> None:
    before = moor.all_ids()
    stderr = moor.fails("run", "--pull", "never", "nosuchimage:9", code=125)
    assert "nosuchimage" in stderr, stderr
    stderr = moor.fails("create", "nosuchimage:9", code=125)
    assert "Unable to find image 'nosuchimage:9' locally" in stderr, stderr
    assert moor.all_ids() == before, "a missing image leaves no container"

    missing = f"nosuch{uuid.uuid4().hex[:6]}"
    for args in (
        ("start", missing),
        ("stop", missing),
        ("logs", missing),
        ("rm", missing),
        ("exec", missing, "true"),
        ("container", "inspect", missing),
        ("kill", missing),
        ("restart", missing),
        ("wait", missing),
        ("pause", missing),
        ("diff", missing),
        ("top", missing),
        ("port", missing),
    ):
        stderr = moor.fails(*args, code=1)
        assert f"No such container: {missing}" in stderr, f"moor {' '.join(args)}: {stderr!r}"
    stderr = moor.fails("inspect", missing, code=1)
    assert f"No such object: {missing}" in stderr, stderr
    assert moor.all_ids() == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-e", "=x"], "invalid environment variable: =x"),
        (["--env-file", "/no/such/env.list"], "open /no/such/env.list: no such file or directory"),
        (["-v", ":/x"], "invalid spec: :/x"),
        (["-v", "a:b"], "invalid volume specification: 'a:b'"),
        (["--restart", "sometimes"], "unknown policy 'sometimes'"),
        (["-m", "12q"], 'invalid argument "12q" for "-m, --memory" flag'),
        (["--ulimit", "nofile=lots"], "invalid ulimit value in nofile=lots"),
        (["--ulimit", "bogus=1"], "invalid ulimit type: bogus"),
        (["--ulimit", "nofile=200:100"], "soft limit must be less than or equal to hard limit"),
        (["--health-interval", "1x"], 'invalid argument "1x" for "--health-interval" flag'),
        (["--cpus", "lots"], 'invalid argument "lots" for "--cpus" flag'),
        (["--mount", "type=nfs,target=/x"], "unsupported mount type 'nfs'"),
        (["--security-opt", "seccomp=/no/such.json"], "opening seccomp profile"),
        (["--rm", "--restart", "always"], "cannot specify both --restart and --rm"),
    ],
)
def test_bad_flags_exit_125_and_create_nothing(moor: Moor, flags: list[str], message: str) -> None:
    before = moor.all_ids()
    for command in ("run", "create"):
        stderr = moor.fails(command, *flags, "busybox", "true", code=125)
        assert message in stderr, f"moor {command} {' '.join(flags)}: {stderr!r}"
        assert f"Run 'moor {command} --help'" in stderr
    assert moor.all_ids() == before, f"{flags} left a container behind"


def test_commands_that_cannot_run(moor: Moor) -> None:
    missing = moor.name("noexe")
    stderr = moor.fails(
        "run", "--name", missing, "--entrypoint", "nosuchbinary", "busybox", code=127
    )
    assert 'exec: "nosuchbinary": executable file not found in $PATH' in stderr, stderr
    state = moor.state(missing)
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 127, False)
    assert "executable file not found" in state["Error"]
    listed = moor.out("ps", "-a", "--filter", f"name={missing}", "--format", "{{.Status}}")
    assert listed.startswith("Exited (127)"), listed

    not_executable = moor.name("noperm")
    stderr = moor.fails("run", "--name", not_executable, "busybox", "/etc/passwd", code=126)
    assert 'exec: "/etc/passwd": permission denied' in stderr, stderr
    state = moor.state(not_executable)
    assert (state["Status"], state["ExitCode"]) == ("exited", 126)
    # Detached, the failure is the same, reported before any id is printed.
    detached = moor.name("noperm-d")
    result = moor("run", "-d", "--name", detached, "busybox", "/etc/passwd", check=False)
    assert (result.returncode, result.stdout) == (126, b""), result
    assert moor.state(detached)["ExitCode"] == 126

    quick = moor.name("quick")
    _run_d(moor, quick, "busybox", "true")
    _await(lambda: not moor.state(quick)["Running"], "a container that exits at once to end")
    status = moor.out("ps", "-a", "--filter", f"name={quick}", "--format", "{{.Status}}")
    assert status.startswith("Exited (0) "), status


def test_start_failure_messages_read_as_dockers(moor: Moor) -> None:
    """dockerd words it `exec: "/etc/passwd": permission denied`, no Python class name."""
    name = moor.name("wording")
    stderr = moor.fails("run", "--name", name, "busybox", "/etc/passwd", code=126)
    assert "PermissionError" not in stderr, stderr
    assert "PermissionError" not in moor.state(name)["Error"]


def test_run_rm_that_cannot_start_leaves_nothing(moor: Moor) -> None:
    before = moor.all_ids()
    name = moor.name("rmfail")
    moor.fails("run", "--rm", "--name", name, "busybox", "nosuchcommand", code=127)
    left = moor.all_ids() - before
    assert not left, (
        f"run --rm whose start failed left {sorted(left)} "
        f"({moor.out('ps', '-a', '--filter', f'name={name}')})"
    )
