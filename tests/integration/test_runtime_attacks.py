"""Attacks from inside a container run by moor-runtime; every one must be blocked.

Each test arranges a bundle whose process attacks the host the way a known container
escape did, runs it with the ``moor-runtime`` command line, and checks on the host that
nothing happened: files keep their bytes, no mount appears, no host process is touched.

- CVE-2019-5736: the runtime's own executable reached through ``/proc/<pid>/exe``;
- CVE-2024-21626: a runtime descriptor leaked into the container and used as its cwd;
- CVE-2021-30465: symlinks in the image or in a volume that redirect mounts, also
  swapped while the container is being set up;
- CVE-2022-0492: cgroup release_agent and hierarchies of the container's own;
- global sysctls in config.json, which the init would write to the host;
- the masked and read-only paths, the capability set, the device cgroup, the default
  seccomp profile and the pid namespace, each probed by what a container would try.

Some attacks need a program busybox does not have: the CVE-2019-5736 payload is a
Python script run by whatever ``/proc/self/exe`` names (the rootfs gets the loader,
libraries and ``encodings`` that interpreter needs), and the system calls busybox cannot
make come from ``sysprobe``, a small static C program built here with gcc.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bundles import make_bundle
from conftest import moor_runtime
from moorage.oci.default_spec import DEFAULT_MASKED_PATHS

pytestmark = pytest.mark.root

Edit = Callable[[dict[str, Any]], None]

# --- the runtime, bundles and host state ---------------------------------------------


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Runtime:
    """``moor-runtime --root <root>`` for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def cmd(
        self,
        *args: str,
        check: bool = False,
        open_fds: Mapping[int, Path] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
    ) -> Result:
        """Run the runtime; ``open_fds`` are opened for it alone, by a shell in between.

        Output goes to files, not pipes: a created container keeps the stdio it was
        given, so waiting for end-of-file on a pipe would wait for the container.
        """
        argv = [moor_runtime(), "--root", str(self.root), *args]
        if open_fds:
            redirects = " ".join(f'{fd}<"${i}"' for i, fd in enumerate(open_fds, start=1))
            argv = [
                "/bin/sh",
                "-c",
                f'exec {redirects}; shift {len(open_fds)}; exec "$@"',
                "sh",
                *(str(p) for p in open_fds.values()),
                *argv,
            ]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            result = Result(proc.returncode, out.read().decode(), err.read().decode())
        if check and result.returncode != 0:
            raise AssertionError(f"moor-runtime {' '.join(args)} failed: {result.stderr}")
        return result

    def run(self, bundle: Path, cid: str, **kw: Any) -> Result:
        return self.cmd("run", "--bundle", str(bundle), cid, **kw)

    def start_detached(
        self, bundle: Path, cid: str, *options: str, open_fds: Mapping[int, Path] | None = None
    ) -> int:
        """create + start; the container's pid on the host."""
        self.cmd("create", *options, "--bundle", str(bundle), cid, check=True, open_fds=open_fds)
        self.cmd("start", cid, check=True)
        return int(self.state(cid)["pid"])

    def exec_detached(
        self,
        cid: str,
        *args: str,
        options: tuple[str, ...] = (),
        open_fds: Mapping[int, Path] | None = None,
    ) -> int:
        """``exec --detach``; the new process's pid on the host."""
        with tempfile.TemporaryDirectory() as work:
            pid_file = Path(work) / "pid"
            self.cmd(
                "exec",
                "--detach",
                "--pid-file",
                str(pid_file),
                *options,
                cid,
                *args,
                check=True,
                open_fds=open_fds,
            )
            return int(pid_file.read_text())

    def state(self, cid: str) -> dict[str, Any]:
        result = self.cmd("state", cid, check=True)
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def delete(self, cid: str) -> None:
        self.cmd("delete", "--force", cid)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# Where an escaping mount would land: the host's usual mount points (exactly), and the
# places under which these tests work. Only these are watched, because other work on
# the machine may mount elsewhere meanwhile.
WATCHED_POINTS = frozenset({"/", "/dev", "/etc", "/proc", "/run", "/sys", "/sys/fs/cgroup", "/tmp"})
WATCHED_PREFIXES = ("/etc/", "/tmp/moorage-escape-", "/run/moor-runtime-test/")


def mount_table(*also_under: Path) -> Counter[str]:
    """Watched host mount points, counted: a mount stacked on an existing point shows."""
    prefixes = WATCHED_PREFIXES + tuple(f"{p}/" for p in also_under)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return Counter(p for p in points if p in WATCHED_POINTS or p.startswith(prefixes))


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` with what it is: file bytes' digest, link target, dir."""
    snap: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                snap[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                snap[rel] = "dir"
            elif path.is_file():
                snap[rel] = f"file:{hashlib.sha256(path.read_bytes()).hexdigest()}"
            else:
                snap[rel] = f"other:{path.lstat().st_mode:o}"
    return snap


@pytest.fixture
def rt(runtime_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The runtime; on teardown every container is gone and no host mount is left."""
    basetemp = tmp_path_factory.getbasetemp()
    before = mount_table(basetemp)
    runtime = Runtime(runtime_root)
    yield runtime
    for name in os.listdir(runtime_root):
        if not name.startswith("."):  # the runtime's own caches, not containers
            runtime.delete(name)
    leaked = mount_table(basetemp) - before
    assert not leaked, f"mounts left on the host: {sorted(leaked)}"


@pytest.fixture
def bundle_factory(tmp_path: Path, busybox_template: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(args: list[str], *edits: Edit, template: Path | None = None) -> Path:
        def edit(config: dict[str, Any]) -> None:
            for e in edits:
                e(config)

        return make_bundle(
            tmp_path / f"b{next(counter)}",
            args,
            template=template or busybox_template,
            edit=edit,
        )

    return factory


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def _set_caps(config: dict[str, Any], change: Callable[[list[str]], list[str]]) -> None:
    caps = config["process"]["capabilities"]
    for key in ("bounding", "effective", "permitted"):
        caps[key] = change(list(caps[key]))


def drop_caps(*names: str) -> Edit:
    return lambda config: _set_caps(config, lambda caps: [c for c in caps if c not in names])


def add_caps(*names: str) -> Edit:
    return lambda config: _set_caps(config, lambda caps: caps + [n for n in names if n not in caps])


def no_seccomp(config: dict[str, Any]) -> None:
    config["linux"].pop("seccomp", None)


def add_env(*items: str) -> Edit:
    return lambda config: config["process"]["env"].extend(items)


def add_mounts(*mounts: dict[str, Any]) -> Edit:
    return lambda config: config["mounts"].extend(mounts)


# --- the host's interpreter, which CVE-2019-5736 would overwrite --------------------


def interpreter_files() -> list[str]:
    """The host files a process of the runtime executes: the interpreter and libpython."""
    files = {os.path.realpath(sys.executable)}
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and "libpython" in os.path.basename(fields[5].strip()):
                files.add(os.path.realpath(fields[5].strip()))
    return sorted(files)


def fingerprint(path: str) -> tuple[str, int, int]:
    """Bytes and modification time: a write of the same bytes still shows."""
    st = os.stat(path)
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return digest, st.st_size, st.st_mtime_ns


@pytest.fixture
def host_interpreter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Fingerprints of the interpreter files; put back from a copy should a test break them."""
    backup_dir = tmp_path_factory.mktemp("interpreter-backup")
    before = {}
    backups = {}
    for path in interpreter_files():
        before[path] = fingerprint(path)
        backups[path] = backup_dir / hashlib.sha256(path.encode()).hexdigest()
        shutil.copy2(path, backups[path])
    try:
        yield before
    finally:
        for path, print_before in before.items():
            if fingerprint(path) != print_before:
                tmp = f"{path}.moorage-restore"
                shutil.copy2(backups[path], tmp)
                os.replace(tmp, path)
        shutil.rmtree(backup_dir, ignore_errors=True)


def _ldd(path: str) -> list[str]:
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"(/\S+)", out)


@pytest.fixture(scope="session")
def python_template(busybox_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs plus what the runtime's interpreter needs to start inside it.

    The interpreter itself is not copied: a payload that runs is run by whatever the
    runtime left behind ``/proc/self/exe``. It finds its loader and libraries at their
    host paths (copies, inside the rootfs) and its ``encodings`` under PYTHONHOME.
    """
    rootfs = tmp_path_factory.mktemp("python") / "rootfs"
    shutil.copytree(busybox_template, rootfs, symlinks=True)
    for lib in _ldd(os.path.realpath(sys.executable)):
        dest = rootfs / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.realpath(lib), dest)
        dest.chmod(0o755)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copytree(
        Path(os.path.dirname(os.__file__)) / "encodings",
        rootfs / "pyhome" / "lib" / version / "encodings",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return rootfs


PYTHONHOME = "PYTHONHOME=/pyhome"

# The CVE-2019-5736 payload. Its interpreter is /proc/self/exe, so it runs as whatever
# the process that exec'd it was running: the runtime's own executable. It reports
# what that is and tries to write it directly, then the way the exploit does: keep an
# O_PATH descriptor, stop executing the file (exec busybox), and reopen it for writing.
# Every write puts back the bytes an ELF file starts with, so even a success changes no
# content (the modification time still shows it).
PAYLOAD = r"""#!/proc/self/exe -S
import os, sys, time

def say(*words):
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())

def try_write(tag, path, flags):
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        say(tag, "open-denied", exc.errno)
        return
    try:
        os.pwrite(fd, b"\x7fELF", 0)
        say(tag, "WROTE")
    except OSError as exc:
        say(tag, "write-denied", exc.errno)
    finally:
        os.close(fd)

me = os.getpid()
say("ran", me, os.readlink("/proc/self/exe"))
try_write("self-wronly", "/proc/self/exe", os.O_WRONLY)
try_write("self-rdwr", "/proc/self/exe", os.O_RDWR)
for entry in sorted(os.listdir("/proc")):
    if not entry.isdigit() or int(entry) == me:
        continue
    try:
        target = os.readlink(f"/proc/{entry}/exe")
    except OSError as exc:
        target = f"unreadable:{exc.errno}"
    say("other", entry, target)
    try_write(f"other-{entry}", f"/proc/{entry}/exe", os.O_WRONLY | os.O_APPEND)
if sys.argv[1:] == ["wait-for-scanner"]:
    deadline = time.monotonic() + 30
    while not os.path.exists(f"/tmp/seen-{me}") and time.monotonic() < deadline:
        time.sleep(0.01)
    say("scanned", os.path.exists(f"/tmp/seen-{me}"))
keep = os.open("/proc/self/exe", os.O_PATH)
os.set_inheritable(keep, True)
os.execv("/bin/sh", ["sh", "-c", '''
echo "held $(readlink /proc/self/fd/$1)"
( exec 4<>"/proc/self/fd/$1" || exit 3; printf '\177ELF' >&4 || exit 4 ) 2>/dev/null
echo "reopen-write $?"
''', "sh", str(keep)])
"""

# Scans every process's exe over and over, logging its target and trying to open it
# for writing, as the CVE-2019-5736 exploit watches for the runtime's process. Stops
# when the host creates /tmp/stop, and in any case after two minutes.
SCANNER = r"""
i=0
end=$(( $(date +%s) + 120 ))
while [ ! -e /tmp/stop ] && [ "$(date +%s)" -lt "$end" ]; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    t=$(readlink "$d/exe" 2>/dev/null) || t=unreadable
    echo "exe $p $t" >> /tmp/scan.log
    : > "/tmp/seen-$p"
    if ( exec 3>>"$d/exe" ) 2>/dev/null; then echo "OPENED $p $t" >> /tmp/scan.log; fi
  done
  [ "$i" -eq 0 ] && : > /tmp/ready
  i=$((i+1))
done
"""


@dataclass
class PayloadReport:
    exe: str
    lines: list[str]

    @classmethod
    def parse(cls, result: Result) -> PayloadReport:
        lines = result.stdout.splitlines()
        ran = [line for line in lines if line.startswith("ran ")]
        assert ran, f"the payload did not run: {result}"
        return cls(exe=ran[0].split(" ", 2)[2], lines=lines)

    def successful_writes(self) -> list[str]:
        return [line for line in self.lines if "WROTE" in line]

    def reopen_status(self) -> int:
        found = [line for line in self.lines if line.startswith("reopen-write ")]
        assert found, "the payload never tried to reopen its executable"
        return int(found[0].split()[1])

    def other_exes(self) -> list[str]:
        return [line.split(" ", 2)[2] for line in self.lines if line.startswith("other ")]


def add_payload(bundle: Path) -> None:
    evil = bundle / "rootfs" / "evil"
    evil.write_text(PAYLOAD)
    evil.chmod(0o755)


def assert_payload_blocked(report: PayloadReport, host_paths: list[str]) -> None:
    assert report.exe not in host_paths, f"the container ran a host file: {report.exe}"
    assert not report.successful_writes(), report.lines
    # 3: reopening for writing was refused; 4: it opened, the write was refused.
    assert report.reopen_status() in (3, 4), report.lines
    for exe in report.other_exes():
        assert exe not in host_paths, report.lines


# --- 1. CVE-2019-5736: the runtime's executable through /proc/<pid>/exe -------------


def test_entrypoint_through_proc_self_exe_cannot_write_the_runtime(
    rt: Runtime,
    bundle_factory: Callable[..., Path],
    python_template: Path,
    host_interpreter: dict[str, Any],
) -> None:
    bundle = bundle_factory(["/evil"], add_env(PYTHONHOME), template=python_template)
    add_payload(bundle)

    result = rt.run(bundle, "c1")

    report = PayloadReport.parse(result)
    assert_payload_blocked(report, list(host_interpreter))
    assert {p: fingerprint(p) for p in host_interpreter} == host_interpreter


def test_exec_into_a_container_scanning_proc_exe_cannot_write_the_runtime(
    rt: Runtime,
    bundle_factory: Callable[..., Path],
    python_template: Path,
    host_interpreter: dict[str, Any],
) -> None:
    bundle = bundle_factory(sh(SCANNER), add_env(PYTHONHOME), template=python_template)
    add_payload(bundle)
    tmp = bundle / "rootfs" / "tmp"
    rt.start_detached(bundle, "c1")
    wait_for((tmp / "ready").exists, "the scanner's first round")

    reports = []
    for _ in range(3):
        result = rt.cmd("exec", "c1", "/evil", "wait-for-scanner")
        reports.append(PayloadReport.parse(result))
        assert rt.cmd("exec", "c1", "true").returncode == 0
    (tmp / "stop").touch()
    wait_for(lambda: rt.state("c1")["status"] == "stopped", "the scanner to stop")

    for report in reports:
        assert_payload_blocked(report, list(host_interpreter))
        assert "scanned True" in report.lines, report.lines
    log = (tmp / "scan.log").read_text().splitlines()
    seen = {line.split(" ", 2)[2] for line in log if line.startswith("exe ")}
    assert not seen & set(host_interpreter), sorted(seen)
    assert not [line for line in log if line.startswith("OPENED")], sorted(set(log))
    assert {p: fingerprint(p) for p in host_interpreter} == host_interpreter


def test_init_waiting_for_start_is_out_of_reach_of_a_shared_pid_namespace(
    rt: Runtime,
    bundle_factory: Callable[..., Path],
    host_interpreter: dict[str, Any],
) -> None:
    # Between create and start the init is still the runtime's process. A container
    # that shares its pid namespace (a pod's sidecar) sees it as pid 1.
    first = bundle_factory(["true"])
    rt.cmd("create", "--bundle", str(first), "waiting", check=True)
    init_pid = int(rt.state("waiting")["pid"])

    def share_pid_ns(config: dict[str, Any]) -> None:
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{init_pid}/ns/pid"

    attacker = bundle_factory(
        sh(
            "echo self $$; [ -e /proc/1/stat ] && echo INIT-VISIBLE;"
            "readlink /proc/1/exe && echo READ-EXE;"
            "( exec 3>>/proc/1/exe ) && echo OPENED-EXE;"
            "( exec 3<>/proc/1/mem ) && echo OPENED-MEM;"
            "cat /proc/1/maps > /dev/null && echo READ-MAPS;"
            '[ -n "$(ls /proc/1/map_files)" ] && echo LISTED-MAP-FILES;'
            '[ -n "$(ls /proc/1/root/)" ] && echo LISTED-ROOT;'
            "readlink /proc/1/cwd && echo READ-CWD;"
            "for f in /proc/1/fd/*; do readlink $f && echo READ-FD; done;"
            # Reading the exec fifo would start the container without `start`.
            '[ -n "$(cat /proc/1/fd/* 2>/dev/null)" ] && echo READ-FIFO;'
            "cat /proc/1/environ > /dev/null && echo READ-ENVIRON;"
            "true"
        ),
        share_pid_ns,
    )

    result = rt.run(attacker, "attacker")

    assert result.returncode == 0, result.stderr
    assert "INIT-VISIBLE" in result.stdout, "the attacker does not see the waiting init"
    assert "self 1" not in result.stdout
    for success in (
        "READ-EXE",
        "OPENED-EXE",
        "OPENED-MEM",
        "READ-MAPS",
        "LISTED-MAP-FILES",
        "LISTED-ROOT",
        "READ-CWD",
        "READ-FD",
        "READ-ENVIRON",
        "READ-FIFO",
    ):
        assert success not in result.stdout, result.stdout
    assert rt.state("waiting")["status"] == "created"
    exe = os.readlink(f"/proc/{init_pid}/exe")
    assert exe not in host_interpreter
    assert os.stat(f"/proc/{init_pid}/exe").st_nlink == 0, f"the init runs a host file: {exe}"
    assert {p: fingerprint(p) for p in host_interpreter} == host_interpreter


# --- 2. CVE-2024-21626: descriptors of the runtime leaking into the container --------


@pytest.fixture
def host_marker(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A host directory holding a file whose name and content is a fresh token."""
    directory = tmp_path / "host-side"
    directory.mkdir()
    token = f"HOST-MARKER-{secrets.token_hex(6)}"
    (directory / token).write_text(token)
    yield directory, token
    shutil.rmtree(directory, ignore_errors=True)


def _host_dir_fds(directory: Path) -> dict[int, Path]:
    """Descriptors 3..9 all open on a host directory, as a leaky caller would have them."""
    return dict.fromkeys(range(3, 10), directory)


def fds_of(pid: int) -> dict[int, str]:
    """A process's descriptors and what they point at, read from the host.

    Read from outside, so that no listing (and no shell's pipe or saved descriptor)
    adds a descriptor of its own to what is listed.
    """
    fds = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            fds[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return fds


def test_container_process_gets_only_stdio_even_from_a_leaky_caller(
    rt: Runtime, bundle_factory: Callable[..., Path], host_marker: tuple[Path, str]
) -> None:
    bundle = bundle_factory(["sleep", "1000"])

    pid = rt.start_detached(bundle, "c1", open_fds=_host_dir_fds(host_marker[0]))

    fds = fds_of(pid)
    assert sorted(fds) == [0, 1, 2], fds


def test_exec_process_gets_only_stdio_even_from_a_leaky_caller(
    rt: Runtime, bundle_factory: Callable[..., Path], host_marker: tuple[Path, str]
) -> None:
    init = rt.start_detached(bundle_factory(["sleep", "1000"]), "c1")

    pid = rt.exec_detached("c1", "sleep", "1000", open_fds=_host_dir_fds(host_marker[0]))

    fds = fds_of(pid)
    assert sorted(fds) == [0, 1, 2], fds
    assert sorted(fds_of(init)) == [0, 1, 2]


@pytest.mark.parametrize("verb", ["create", "exec"])
def test_preserve_fds_passes_exactly_the_requested_descriptors(
    rt: Runtime, bundle_factory: Callable[..., Path], tmp_path: Path, verb: str
) -> None:
    held = tmp_path / "held"
    held.write_text("held\n")
    fds = dict.fromkeys(range(3, 8), held)
    bundle = bundle_factory(["sleep", "1000"])
    if verb == "create":
        pid = rt.start_detached(bundle, "c1", "--preserve-fds", "2", open_fds=fds)
    else:
        rt.start_detached(bundle, "c1")
        pid = rt.exec_detached("c1", "sleep", "1000", options=("--preserve-fds", "2"), open_fds=fds)

    got = fds_of(pid)
    assert sorted(got) == [0, 1, 2, 3, 4], got
    assert got[3] == got[4] == str(held)


def _escape_attempt(token: str) -> str:
    """Show the cwd and its parents, and reach for the marker through ``..`` chains."""
    climb = "../" * 12
    return f"pwd; ls -a; ls -a ..; ls -a ../..; cat {climb}tmp/*/*/*/*/{token} {climb}*/{token}"


def _assert_no_escape(result: Result, token: str) -> None:
    assert token not in result.stdout, result.stdout
    if result.returncode != 0:
        # Refusing is fine, but the message must say why.
        error = result.stderr.lower()
        assert "cwd" in error or "working directory" in error, f"unclear error: {result.stderr!r}"


@pytest.mark.parametrize("fd", range(3, 10))
def test_cwd_through_a_descriptor_does_not_leave_the_root(
    rt: Runtime,
    bundle_factory: Callable[..., Path],
    host_marker: tuple[Path, str],
    fd: int,
) -> None:
    directory, token = host_marker

    def cwd(config: dict[str, Any]) -> None:
        config["process"]["cwd"] = f"/proc/self/fd/{fd}"

    bundle = bundle_factory(sh(_escape_attempt(token)), cwd)

    result = rt.run(bundle, "c1", open_fds=_host_dir_fds(directory), cwd=directory)

    _assert_no_escape(result, token)


@pytest.mark.parametrize("fd", range(3, 10))
def test_exec_cwd_through_a_descriptor_does_not_leave_the_root(
    rt: Runtime,
    bundle_factory: Callable[..., Path],
    host_marker: tuple[Path, str],
    fd: int,
) -> None:
    directory, token = host_marker
    rt.start_detached(bundle_factory(["sleep", "1000"]), "c1")

    result = rt.cmd(
        "exec",
        "--cwd",
        f"/proc/self/fd/{fd}",
        "c1",
        *sh(_escape_attempt(token)),
        open_fds=_host_dir_fds(directory),
        cwd=directory,
    )

    _assert_no_escape(result, token)


def test_preserved_host_directory_cannot_become_the_cwd(
    rt: Runtime, bundle_factory: Callable[..., Path], host_marker: tuple[Path, str]
) -> None:
    # The caller hands over a host directory on purpose; the image's config must still
    # not be able to make it the process's working directory.
    directory, token = host_marker
    rt.start_detached(bundle_factory(["sleep", "1000"]), "c1")

    result = rt.cmd(
        "exec",
        "--preserve-fds",
        "1",
        "--cwd",
        "/proc/self/fd/3",
        "c1",
        *sh(_escape_attempt(token)),
        open_fds={3: directory},
    )

    _assert_no_escape(result, token)


# --- 3. CVE-2021-30465: symlinks that redirect mounts --------------------------------


@dataclass(frozen=True)
class SymlinkCase:
    """A rootfs (or volume) with a symlink, and mounts whose destination goes through it."""

    name: str
    # (bundle, host marker dir, unique name) -> (config edit, host paths that must not appear)
    arrange: Callable[[Path, Path, str], tuple[Edit, list[Path]]]

    def __repr__(self) -> str:
        return self.name


def _tmpfs(destination: str) -> dict[str, Any]:
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs"}


def _bind(source: Path, destination: str) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": str(source), "options": ["bind"]}


def _link(link: Path, target: str) -> None:
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    link.symlink_to(target)


def _root_link_tmpfs(bundle: Path, _marker: Path, unique: str) -> tuple[Edit, list[Path]]:
    _link(bundle / "rootfs" / "evil", "/")
    return add_mounts(_tmpfs(f"/evil/tmp/{unique}")), [Path("/tmp") / unique]


def _relative_climb_tmpfs(bundle: Path, _marker: Path, unique: str) -> tuple[Edit, list[Path]]:
    _link(bundle / "rootfs" / "up", "../" * 16 + "tmp")
    return add_mounts(_tmpfs(f"/up/{unique}")), [Path("/tmp") / unique]


def _etc_link_bind(bundle: Path, _marker: Path, unique: str) -> tuple[Edit, list[Path]]:
    _link(bundle / "rootfs" / "mnt", "/etc")
    source = bundle / "passwd-copy"
    source.write_text("planted\n")
    return add_mounts(_bind(source, f"/mnt/{unique}")), [Path("/etc") / unique]


def _dangling_link_destination(bundle: Path, _marker: Path, unique: str) -> tuple[Edit, list[Path]]:
    _link(bundle / "rootfs" / "etc" / "evil-link", f"/etc/{unique}")
    source = bundle / "planted"
    source.write_text("planted\n")
    return add_mounts(_bind(source, "/etc/evil-link")), [Path("/etc") / unique]


def _dev_link_to_host_dir(bundle: Path, marker: Path, _unique: str) -> tuple[Edit, list[Path]]:
    _link(bundle / "rootfs" / "dev", str(marker))
    return (lambda _config: None), []


def _data_link_to_host_dir(bundle: Path, marker: Path, unique: str) -> tuple[Edit, list[Path]]:
    _link(bundle / "rootfs" / "data", str(marker))
    source = bundle / "planted"
    source.write_text("planted\n")
    return add_mounts(_bind(source, f"/data/{unique}"), _tmpfs(f"/data/{unique}-dir")), []


def _volume_link(bundle: Path, _marker: Path, unique: str) -> tuple[Edit, list[Path]]:
    # Another container wrote this symlink into a volume both share.
    volume = bundle / "volume"
    volume.mkdir()
    (volume / "link").symlink_to("/")
    return (
        add_mounts(
            {"destination": "/vol", "type": "bind", "source": str(volume), "options": ["rbind"]},
            _tmpfs(f"/vol/link/tmp/{unique}"),
        ),
        [Path("/tmp") / unique],
    )


def _dotdot_destination(_bundle: Path, _marker: Path, unique: str) -> tuple[Edit, list[Path]]:
    # No symlink at all: a destination that climbs with "..", as an image's VOLUME may.
    return add_mounts(_tmpfs(f"/../../../../../../../../tmp/{unique}")), [Path("/tmp") / unique]


SYMLINK_CASES = [
    SymlinkCase("dotdot-in-destination", _dotdot_destination),
    SymlinkCase("absolute-link-to-root", _root_link_tmpfs),
    SymlinkCase("relative-link-climbing-out", _relative_climb_tmpfs),
    SymlinkCase("link-to-host-etc", _etc_link_bind),
    SymlinkCase("dangling-link-as-destination", _dangling_link_destination),
    SymlinkCase("dev-linked-to-host-dir", _dev_link_to_host_dir),
    SymlinkCase("mount-parent-linked-to-host-dir", _data_link_to_host_dir),
    SymlinkCase("symlink-in-shared-volume", _volume_link),
]


@pytest.mark.parametrize("case", SYMLINK_CASES, ids=repr)
def test_symlinks_cannot_redirect_mounts_to_the_host(
    rt: Runtime,
    bundle_factory: Callable[..., Path],
    host_marker: tuple[Path, str],
    case: SymlinkCase,
) -> None:
    marker, _ = host_marker
    unique = f"moorage-escape-{secrets.token_hex(6)}"
    bundle = bundle_factory(["sh", "-c", "cat /proc/self/mountinfo"])
    edit, escapes = case.arrange(bundle, marker, unique)
    config = json.loads((bundle / "config.json").read_text())
    edit(config)
    (bundle / "config.json").write_text(json.dumps(config))
    marker_before = tree_snapshot(marker)
    mounts_before = mount_table(bundle, marker)
    for path in escapes:
        assert not os.path.lexists(path)

    try:
        result = rt.run(bundle, "c1")
        appeared = [str(p) for p in escapes if os.path.lexists(p)]
    finally:
        for path in escapes:
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.rmdir()
            elif os.path.lexists(path):
                path.unlink()

    assert not appeared, f"created on the host: {appeared} ({result.stderr})"
    assert tree_snapshot(marker) == marker_before
    assert mount_table(bundle, marker) == mounts_before


RACER = r"""
end=$(( $(date +%s) + 120 ))
while [ ! -e /vol/stop ] && [ "$(date +%s)" -lt "$end" ]; do
  if [ -L /vol/x ]; then rm -f /vol/x; else rm -rf /vol/x; fi
  mkdir /vol/x
  if [ -L /vol/x ]; then rm -f /vol/x; else rm -rf /vol/x; fi
  ln -s / /vol/x
  [ -e /vol/racing ] || : > /vol/racing
done
"""


def test_symlink_swapped_in_a_shared_volume_during_setup_cannot_redirect_mounts(
    rt: Runtime, bundle_factory: Callable[..., Path], tmp_path: Path
) -> None:
    # The CVE-2021-30465 exploit itself: one container keeps turning a directory of a
    # shared volume into a symlink to / and back, while another is being created with
    # a mount under that directory.
    volume = tmp_path / "volume"
    volume.mkdir()
    unique = f"moorage-escape-{secrets.token_hex(6)}"
    escape = Path("/tmp") / unique
    vol_mount = {"destination": "/vol", "type": "bind", "source": str(volume), "options": ["rbind"]}
    racer = bundle_factory(sh(RACER), add_mounts(vol_mount))
    victim = bundle_factory(
        ["true"], add_mounts(vol_mount, _tmpfs(f"/vol/x/tmp/{unique}"), _tmpfs("/vol/x/m"))
    )
    mounts_before = mount_table(tmp_path)
    rt.start_detached(racer, "racer")
    wait_for((volume / "racing").exists, "the racer's first swap")

    appeared = []
    try:
        for i in range(15):
            rt.run(victim, f"victim{i}")
            if os.path.lexists(escape):
                appeared.append(i)
    finally:
        (volume / "stop").touch()
        with contextlib.suppress(OSError):
            escape.rmdir()

    wait_for(lambda: rt.state("racer")["status"] == "stopped", "the racer to stop")
    assert not appeared, f"{escape} created on the host by victims {appeared}"
    assert not Path("/m").exists()
    assert mount_table(tmp_path) == mounts_before


# --- 4. masked paths, read-only paths, capabilities, the device cgroup ---------------


@pytest.mark.parametrize("path", DEFAULT_MASKED_PATHS)
def test_masked_path_shows_nothing_even_after_trying_to_unmount_it(
    rt: Runtime, bundle_factory: Callable[..., Path], path: str
) -> None:
    host = Path(path)
    if not host.exists():
        pytest.skip(f"{path} does not exist on this kernel")
    has_content = any(host.iterdir()) if host.is_dir() else bool(host.read_bytes())
    if not has_content:
        pytest.skip(f"{path} is empty on this host: masking it shows nothing")
    show = f"ls -A {path}" if host.is_dir() else f"cat {path}"
    bundle = bundle_factory(sh(f"umount {path}; umount -l {path}; {show} | wc -c"))

    result = rt.run(bundle, "c1")

    assert result.stdout.split() == ["0"], (result.stdout, result.stderr)


@dataclass(frozen=True)
class ProcWrite:
    path: str
    # A value that changes nothing should the write get through.
    value_script: str

    def __repr__(self) -> str:
        return self.path


PROC_WRITES = [
    ProcWrite("/proc/sys/kernel/core_pattern", "cat /proc/sys/kernel/core_pattern"),
    ProcWrite("/proc/sys/kernel/modprobe", "cat /proc/sys/kernel/modprobe"),
    ProcWrite("/proc/sys/kernel/ns_last_pid", "cat /proc/sys/kernel/ns_last_pid"),
    ProcWrite("/proc/sysrq-trigger", "echo h"),
]


@pytest.mark.parametrize("write", PROC_WRITES, ids=repr)
def test_readonly_proc_path_refuses_writes_even_after_a_remount(
    rt: Runtime, bundle_factory: Callable[..., Path], write: ProcWrite
) -> None:
    if not os.path.exists(write.path):
        pytest.skip(f"{write.path} does not exist on this kernel")
    host_before = Path(write.path).read_text() if write.path.startswith("/proc/sys/") else None
    mount_point = "/proc/sys" if write.path.startswith("/proc/sys/") else write.path
    bundle = bundle_factory(
        sh(
            f"mount -o remount,rw {mount_point}; mount -o remount,bind,rw {mount_point};"
            f'v=$({write.value_script}); echo "$v" > {write.path} && echo WROTE'
        )
    )

    result = rt.run(bundle, "c1")

    assert "WROTE" not in result.stdout
    assert "Read-only file system" in result.stderr, result.stderr
    if host_before is not None and not write.path.endswith("ns_last_pid"):
        assert Path(write.path).read_text() == host_before


@pytest.mark.parametrize("key", ["kernel.core_pattern", "vm.overcommit_memory"])
def test_sysctl_not_isolated_by_a_namespace_is_refused(
    rt: Runtime, bundle_factory: Callable[..., Path], key: str
) -> None:
    # The init writes linux.sysctl while it still holds every capability: a global
    # one would change the host (a core_pattern of "|/program" is a root shell).
    # The value written is the current one, so nothing changes if it gets through.
    host_file = Path("/proc/sys") / key.replace(".", "/")
    before = host_file.read_text()

    def sysctl(config: dict[str, Any]) -> None:
        config["linux"]["sysctl"] = {key: before.strip()}

    bundle = bundle_factory(["true"], sysctl)

    result = rt.run(bundle, "c1")

    assert result.returncode != 0, "a sysctl of the host's was accepted"
    assert key in result.stderr, result.stderr
    assert host_file.read_text() == before


def test_mount_is_refused_with_the_default_capabilities(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    bundle = bundle_factory(
        sh(
            "mkdir -p /m; mount -t tmpfs none /m && echo MOUNTED;"
            "grep -c ' /m ' /proc/self/mountinfo"
        )
    )

    result = rt.run(bundle, "c1")

    assert "MOUNTED" not in result.stdout
    assert result.stdout.split()[-1] == "0"
    assert "permission denied" in result.stderr.lower(), result.stderr


def test_host_device_nodes_cannot_be_opened(
    rt: Runtime, bundle_factory: Callable[..., Path]
) -> None:
    # CAP_MKNOD is one of Docker's defaults and, as with runc, the device cgroup lets
    # any node be made ("m"); what it refuses is opening one outside the allowed set:
    # the host's root disk, /dev/mem, /dev/kmsg. The allowed null device opens, so
    # the refusal is the device cgroup's. Nothing is ever written to a node.
    root_dev = os.stat("/").st_dev
    nodes = {
        "disk": f"b {os.major(root_dev)} {os.minor(root_dev)}",
        "sda": "b 8 0",
        "mem": "c 1 1",
        "kmsg": "c 1 11",
        "null": "c 1 3",
    }
    script = "".join(
        f"mknod /tmp/{name} {spec};"
        f"head -c 1 /tmp/{name} > /dev/null && echo READ-{name};"
        f"( exec 3<>/tmp/{name} ) && echo OPENED-RW-{name};"
        for name, spec in nodes.items()
    )
    bundle = bundle_factory(sh(script + "true"))

    result = rt.run(bundle, "c1")

    opened = result.stdout.split()
    assert "READ-null" in opened, result.stderr
    assert "OPENED-RW-null" in opened
    for name in ("disk", "sda", "mem", "kmsg"):
        assert f"READ-{name}" not in opened, result.stdout
        assert f"OPENED-RW-{name}" not in opened, result.stdout
    assert "Operation not permitted" in result.stderr


def _host_release_agents() -> dict[str, str]:
    agents = {}
    for path in Path("/sys/fs/cgroup").glob("*/release_agent"):
        agents[str(path)] = path.read_text()
    return agents


def test_cgroup_hierarchies_are_read_only(rt: Runtime, bundle_factory: Callable[..., Path]) -> None:
    # CVE-2022-0492: a container that can write a v1 release_agent, or mount a
    # hierarchy of its own, has the host run a program of its choosing.
    before = _host_release_agents()
    bundle = bundle_factory(
        sh(
            "for d in /sys/fs/cgroup /sys/fs/cgroup/*; do"
            '  [ -e "$d/cgroup.procs" ] || continue; echo "hierarchy $d";'
            '  ( echo /evil > "$d/release_agent" ) 2>/dev/null && echo "WROTE $d/release_agent";'
            '  ( echo 1 > "$d/notify_on_release" ) 2>/dev/null && echo "WROTE $d/notify";'
            '  ( echo $$ > "$d/cgroup.procs" ) 2>/dev/null && echo "WROTE $d/cgroup.procs";'
            '  mkdir "$d/escape" 2>/dev/null && echo "MADE $d/escape";'
            "done;"
            "mkdir -p /tmp/cg;"
            "mount -t cgroup -o memory cgroup /tmp/cg 2>/dev/null && echo MOUNTED;"
            "mount -t cgroup -o rdma cgroup /tmp/cg 2>/dev/null && echo MOUNTED;"
            "mount -t cgroup2 none /tmp/cg 2>/dev/null && echo MOUNTED; true"
        )
    )

    result = rt.run(bundle, "c1")

    assert "hierarchy" in result.stdout, result.stderr
    for success in ("WROTE", "MADE", "MOUNTED"):
        assert success not in result.stdout, result.stdout
    assert _host_release_agents() == before


def test_raw_sockets_need_cap_net_raw(rt: Runtime, bundle_factory: Callable[..., Path]) -> None:
    probe = sh("arping -c 1 -I lo 127.0.0.1; ping -c 1 -W 1 127.0.0.1; true")
    with_raw = bundle_factory(probe)
    without_raw = bundle_factory(probe, drop_caps("CAP_NET_RAW"))

    allowed = rt.run(with_raw, "with")
    refused = rt.run(without_raw, "without")

    assert "arping: socket: Operation not permitted" in refused.stderr, refused.stderr
    assert "ping: permission denied" in refused.stderr, refused.stderr
    # With the capability the sockets open; what fails then is the empty network.
    assert "socket" not in allowed.stderr
    assert "ping: permission denied" not in allowed.stderr


def test_hostname_needs_cap_sys_admin(rt: Runtime, bundle_factory: Callable[..., Path]) -> None:
    host_name = socket.gethostname()
    bundle = bundle_factory(sh("hostname evil-name; hostname"))

    result = rt.run(bundle, "c1")

    assert "Operation not permitted" in result.stderr, result.stderr
    assert result.stdout.split() == ["moorage"]
    assert socket.gethostname() == host_name


def test_chroot_needs_cap_sys_chroot(rt: Runtime, bundle_factory: Callable[..., Path]) -> None:
    probe = sh("chroot / true && echo CHROOTED")
    with_cap = bundle_factory(probe)
    without_cap = bundle_factory(probe, drop_caps("CAP_SYS_CHROOT"))

    allowed = rt.run(with_cap, "with")
    refused = rt.run(without_cap, "without")

    assert "CHROOTED" in allowed.stdout, allowed.stderr
    assert "CHROOTED" not in refused.stdout
    assert "Operation not permitted" in refused.stderr, refused.stderr


# --- 5. the default seccomp profile -------------------------------------------------

SYSPROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

/* System calls busybox cannot make, each with arguments that change nothing even
   when the call gets through: an invalid keyring, a key type that does not exist. */
static long probe(const char *name) {
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, 0, 0);
    if (!strcmp(name, "add_key"))
        return syscall(SYS_add_key, "moorage-no-such-type", "d", "x", 1, 0);
    if (!strcmp(name, "personality")) return syscall(SYS_personality, 0x0040000 /* no ASLR */);
    if (!strcmp(name, "clone3")) return syscall(SYS_clone3, NULL, 0);
    errno = EINVAL;
    return -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long ret = probe(argv[i]);
        printf("%s ret=%ld errno=%d\n", argv[i], ret, ret < 0 ? errno : 0);
    }
    return 0;
}
"""


@pytest.fixture(scope="session")
def sysprobe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (needed to build the sysprobe helper)")
    work = tmp_path_factory.mktemp("sysprobe")
    (work / "sysprobe.c").write_text(SYSPROBE_C)
    build = subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(work / "sysprobe"), str(work / "sysprobe.c")],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a static helper: {build.stderr.strip()}")
    return work / "sysprobe"


@dataclass(frozen=True)
class Denied:
    """A command the default profile must refuse, and how it ends without the profile."""

    name: str
    script: str
    # Output (stdout + stderr) under the profile, and without it.
    filtered: str
    unfiltered: str
    needs_sysprobe: bool = False

    def __repr__(self) -> str:
        return self.name


DENIED = [
    Denied("unshare-user", "unshare -U true && echo OK", "Operation not permitted", "OK"),
    Denied("unshare-mount", "unshare -m true && echo OK", "Operation not permitted", "OK"),
    Denied("nsenter", "nsenter -t 1 -u true && echo OK", "Operation not permitted", "OK"),
    Denied(
        "mount",
        "mkdir -p /m && mount -t tmpfs none /m && echo OK",
        "permission denied",
        "OK",
    ),
    Denied(
        "swapon",
        # Not a swap file: without the filter the kernel refuses it, with EINVAL.
        "dd if=/dev/zero of=/tmp/swap bs=4096 count=16 2>/dev/null; swapon /tmp/swap",
        "Operation not permitted",
        "Invalid argument",
    ),
    Denied("keyctl", "/sysprobe keyctl", "keyctl ret=-1 errno=1", "errno=22", True),
    Denied("add_key", "/sysprobe add_key", "add_key ret=-1 errno=1", "errno=22", True),
    Denied("personality", "/sysprobe personality", "personality ret=-1 errno=1", "errno=0", True),
    # clone3's flags are out of a filter's reach: the profile answers ENOSYS so that
    # libc falls back to clone, whose flags it can check.
    Denied("clone3", "/sysprobe clone3", "clone3 ret=-1 errno=38", "errno=22", True),
]


def _probe_bundle(
    bundle_factory: Callable[..., Path], sysprobe_path: Path | None, script: str, *edits: Edit
) -> Path:
    # CAP_SYS_ADMIN is granted, so a refusal is the filter's, not the capability set's.
    bundle = bundle_factory(
        sh(f"grep Seccomp: /proc/self/status; {script}"), add_caps("CAP_SYS_ADMIN"), *edits
    )
    if sysprobe_path is not None:
        shutil.copy2(sysprobe_path, bundle / "rootfs" / "sysprobe")
    return bundle


@pytest.mark.parametrize("case", DENIED, ids=repr)
def test_default_profile_refuses_even_with_cap_sys_admin(
    rt: Runtime, bundle_factory: Callable[..., Path], request: pytest.FixtureRequest, case: Denied
) -> None:
    probe = request.getfixturevalue("sysprobe") if case.needs_sysprobe else None
    bundle = _probe_bundle(bundle_factory, probe, case.script)

    result = rt.run(bundle, "c1")

    output = result.stdout + result.stderr
    assert "Seccomp:\t2" in result.stdout, "no seccomp filter was loaded"
    assert case.filtered in output, output
    assert "OK" not in result.stdout.split()


@pytest.mark.parametrize("case", DENIED, ids=repr)
def test_without_the_profile_the_same_call_reaches_the_kernel(
    rt: Runtime, bundle_factory: Callable[..., Path], request: pytest.FixtureRequest, case: Denied
) -> None:
    probe = request.getfixturevalue("sysprobe") if case.needs_sysprobe else None
    bundle = _probe_bundle(bundle_factory, probe, case.script, no_seccomp)

    result = rt.run(bundle, "c1")

    output = result.stdout + result.stderr
    assert "Seccomp:\t0" in result.stdout
    assert case.unfiltered in output, output


# --- 6. the pid namespace -----------------------------------------------------------


@pytest.fixture
def host_sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", str(900000 + secrets.randbelow(99999))])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _start_time(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()[19]


def test_container_can_neither_see_nor_signal_host_processes(
    rt: Runtime, bundle_factory: Callable[..., Path], host_sleeper: subprocess.Popen[bytes]
) -> None:
    pid = host_sleeper.pid
    started = _start_time(pid)
    marker = f"sleep {host_sleeper.args[1]}"  # type: ignore[index]
    bundle = bundle_factory(
        sh(
            "for d in /proc/[0-9]*; do echo \"pid ${d#/proc/} $(tr '\\0' ' ' < $d/cmdline)\"; done;"
            f"kill -9 {pid} && echo KILLED-HOST-PID;"
            "kill -9 -1; kill -9 1; echo survived"
        )
    )

    result = rt.run(bundle, "c1")

    visible = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("pid ")]
    assert visible, result.stdout
    assert str(pid) not in visible
    assert marker not in result.stdout
    assert "KILLED-HOST-PID" not in result.stdout.splitlines()
    assert host_sleeper.poll() is None
    assert _start_time(pid) == started


def test_kill_from_exec_stays_inside_the_container(
    rt: Runtime, bundle_factory: Callable[..., Path], host_sleeper: subprocess.Popen[bytes]
) -> None:
    pid = host_sleeper.pid
    started = _start_time(pid)
    init = rt.start_detached(bundle_factory(["sleep", "1000"]), "c1")

    rt.cmd("exec", "c1", "kill", "-9", str(pid))
    rt.cmd("exec", "c1", *sh("kill -9 -1; kill -9 1"))

    assert host_sleeper.poll() is None
    assert _start_time(pid) == started
    # The container's init cannot be killed from inside its own namespace either.
    assert rt.state("c1")["status"] == "running"
    assert Path(f"/proc/{init}").exists()
