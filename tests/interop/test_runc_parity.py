"""The same bundle under runc and under moor-runtime: what a user can observe is equal.

Every case below builds one bundle per runtime (identical but for its cgroupsPath and
the directory its hooks write to), runs it the way its ``driver`` says, and compares
the two observations. Only what legitimately differs between two correct runtimes is
normalised, each time with the reason next to it; everything else must match byte for
byte. runc's observation is also checked against the feature's expected effect, so a
case can never pass by both runtimes ignoring the feature. Where runc 1.1.5 ignores a
field of the spec (``domainname``), crun is the reference instead.

A difference that is a moor-runtime bug stays a failing test (and an entry in
/work/parity-findings.md) until the runtime is fixed.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from parity_harness import (
    BundleContext,
    Runtime,
    Workspace,
    await_condition,
    cgroup_hierarchies,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]

Edit = Callable[[dict[str, Any], BundleContext], None]
# A container that stays up until told to stop; TERM makes it exit 7.
LONG_RUNNING = ["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"]
HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
HOOK_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ---------------------------------------------------------------------------- normalisers


def mountinfo_row(line: str) -> str:
    """One /proc/self/mountinfo line without what says nothing about the container.

    Dropped: mount and parent ids and major:minor (allocation order and host device
    numbering), the root field and the source (host paths of each runtime's own bundle,
    or the tmpfs each runtime happens to bind /dev/null from). Peer group numbers are
    dropped from the propagation tags for the same reason; the tags themselves stay.
    """
    left, _, right = line.partition(" - ")
    fields = left.split()
    mount_point, options = fields[4], fields[5]
    tags = " ".join(sorted(re.sub(r":\d+$", "", tag) for tag in fields[6:]))
    fs_type, _source, super_options = right.split()
    return f"{mount_point} {options} [{tags}] {fs_type} {super_options}"


def _is_mountinfo(line: str) -> bool:
    return bool(re.match(r"^\d+ \d+ \d+:\d+ ", line)) and " - " in line


def normalise_mount_lines(text: str) -> str:
    return "\n".join(mountinfo_row(ln) if _is_mountinfo(ln) else ln for ln in text.splitlines())


def normalise_mount_table(text: str) -> str:
    # Sorted by mount point (stably, so stacked mounts keep their order): the spec does
    # not order masking against read-only remounts of /proc paths, and runc and
    # moor-runtime apply them in different orders; no path is both.
    rows = [mountinfo_row(ln) for ln in text.splitlines() if _is_mountinfo(ln)]
    return "\n".join(sorted(rows, key=lambda row: row.split(" ", 1)[0]))


def normalise_ls_dates(text: str) -> str:
    # Timestamps of /dev entries are the moment each runtime created them.
    return re.sub(r"\b[A-Z][a-z]{2} [ \d]\d +(\d\d:\d\d|\d{4}) ", "<date> ", text)


_SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


def normalise_state(state: dict[str, Any], bundle: Path) -> dict[str, Any]:
    out = dict(state)
    # ociVersion: each runtime reports the spec version it implements (runc 1.1.5 says
    # 1.0.2-dev); only its presence and form are comparable.
    if isinstance(out.get("ociVersion"), str) and _SEMVER.match(out["ociVersion"]):
        out["ociVersion"] = "<semver>"
    # pid: a host pid, different on every run; what matters is whether there is one. The
    # spec makes pid optional once stopped, and runc prints 0 there: absent equals 0.
    if out.get("status") == "stopped" and "pid" not in out:
        out["pid"] = 0
    if isinstance(out.get("pid"), int) and out["pid"] > 0:
        out["pid"] = "<live pid>"
    # bundle and rootfs: each runtime runs its own copy of the bundle.
    if out.get("bundle") == str(bundle):
        out["bundle"] = "<bundle>"
    if out.get("rootfs") == str(bundle / "rootfs"):
        out["rootfs"] = "<bundle>/rootfs"
    # created: the moment each container was created.
    if isinstance(out.get("created"), str) and re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", out["created"]
    ):
        out["created"] = "<rfc3339>"
    return out


# ------------------------------------------------------------------------------- drivers


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    edit: Edit | None = None
    driver: str = "run"
    normalise: Callable[[str], str] | None = None
    fixtures: tuple[str, ...] = ()
    # Checked on the reference's observation: proves the bundle exercises the feature.
    expect_rc: int = 0
    expect_in: tuple[str, ...] = ()
    # The runtime moor-runtime is held to: runc, unless runc 1.1.5 ignores the feature.
    reference: str = "runc"
    # exec-args driver: flags between ``exec`` and the container id.
    exec_flags: tuple[str, ...] = ()


Observation = dict[str, Any]
STDERR = "stderr (not compared)"


def drive_run(rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case) -> Observation:
    out = rt("run", "--bundle", str(bundle), cid)
    stdout = case.normalise(out.stdout) if case.normalise else out.stdout
    # stderr is shown on failure but not compared: the runtimes' own messages differ.
    return {"exit": out.returncode, "stdout": stdout, STDERR: out.stderr}


def _config(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "config.json").read_text())


def _pid(rt: Runtime, cid: str) -> int:
    state = rt.state(cid)
    assert state is not None, f"{rt.name}: no state for {cid}"
    return int(state["pid"])


@contextlib.contextmanager
def created(rt: Runtime, bundle: Path, cid: str, start: bool = False) -> Iterator[int]:
    """A container made with ``create`` (and ``start``); force-deleted on the way out."""
    try:
        rt.checked("create", "--bundle", str(bundle), cid)
        if start:
            rt.checked("start", cid)
            rt.await_status(cid, "running")
        yield _pid(rt, cid)
    finally:
        rt("delete", "--force", cid)


CGROUP_FILES = (
    "memory/memory.limit_in_bytes",
    "cpu/cpu.shares",
    "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us",
    "pids/pids.max",
)


def drive_cgroup_files(
    rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case
) -> Observation:
    cgroups_path = _config(bundle)["linux"]["cgroupsPath"].lstrip("/")
    with created(rt, bundle, cid) as pid:
        files = {}
        for rel in CGROUP_FILES:
            ctrl, name = rel.split("/")
            path = Path("/sys/fs/cgroup") / ctrl / cgroups_path / name
            files[rel] = path.read_text().strip() if path.exists() else "<missing>"
        devices = Path("/sys/fs/cgroup/devices") / cgroups_path / "devices.list"
        # Sorted: after the deny-all the rules form a set; their order grants nothing.
        files["devices/devices.list"] = (
            sorted(devices.read_text().splitlines()) if devices.exists() else "<missing>"
        )
        membership = {}
        for hierarchy in cgroup_hierarchies():
            procs = hierarchy / cgroups_path / "cgroup.procs"
            if not procs.exists():
                membership[hierarchy.name] = "<no cgroup>"
            else:
                membership[hierarchy.name] = pid in [int(p) for p in procs.read_text().split()]
    return {"files": files, "init in cgroup": membership}


def _read_hook_markers(ctx: BundleContext) -> Observation:
    states = {}
    for path in sorted(ctx.marker_dir.glob("*.json")):
        text = path.read_text()
        try:
            state = normalise_state(json.loads(text), ctx.bundle)
        except json.JSONDecodeError:
            states[path.stem] = f"<not JSON: {text!r}>"
            continue
        # poststart runs once the user's program has been executed, so "running" is
        # accurate; runc 1.1.5 passes the state it read before starting it, "created".
        if path.stem == "poststart" and state.get("status") in ("created", "running"):
            state["status"] = "created or running"
        states[path.stem] = state
    order_file = ctx.marker_dir / "order"
    order = order_file.read_text().split() if order_file.exists() else []
    # runc 1.1.5 runs poststart (in `start`) concurrently with startContainer (in the
    # container, once `start` opened the exec fifo), so it records them in either order.
    for i in range(len(order) - 1):
        if {order[i], order[i + 1]} == {"startContainer", "poststart"}:
            order[i : i + 2] = ["startContainer+poststart in either order"]
            break
    return {"hooks that ran": sorted(states), "order": order, "state on stdin": states}


def drive_hooks(rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case) -> Observation:
    out = rt("run", "--bundle", str(bundle), cid)
    return {
        "exit": out.returncode,
        "stdout": out.stdout,
        STDERR: out.stderr,
        **_read_hook_markers(ctx),
    }


def drive_state(rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case) -> Observation:
    seen: dict[str, Any] = {}

    def snap(phase: str) -> None:
        out = rt("state", cid)
        seen[phase] = (
            normalise_state(json.loads(out.stdout), bundle)
            if out.returncode == 0
            else {"exit": out.returncode}
        )

    with created(rt, bundle, cid):
        snap("created")
        rt.checked("start", cid)
        rt.await_status(cid, "running")
        snap("running")
        rt.checked("kill", cid, "KILL")
        rt.await_status(cid, "stopped")
        snap("stopped")
        rt.checked("delete", cid)
        snap("deleted")
    return seen


def drive_lifecycle(
    rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case
) -> Observation:
    # Exit codes and statuses only: error messages are each runtime's own wording.
    steps: list[tuple[str, int, str | None]] = []

    def step(label: str, *args: str, racy: bool = False) -> None:
        out = rt(*args)
        # Right after a signal the status is whatever the race with the exit gives.
        status = "<awaited next>" if racy else rt.status(cid)
        steps.append((label, out.returncode, status))

    try:
        step("create", "create", "--bundle", str(bundle), cid)
        step("kill 0 (created)", "kill", cid, "0")
        step("start", "start", cid)
        rt.await_status(cid, "running")
        step("start again", "start", cid)
        step("delete running", "delete", cid)
        step("kill TERM", "kill", cid, "TERM", racy=True)
        rt.await_status(cid, "stopped")
        step("kill TERM (stopped)", "kill", cid, "TERM")
        step("start (stopped)", "start", cid)
        step("delete", "delete", cid)
        step("delete again", "delete", cid)
        step("state (deleted)", "state", cid)
        steps.append(("list -q", 0, rt("list", "-q").stdout))
    finally:
        rt("delete", "--force", cid)
    return {"steps": steps}


EXEC_SCRIPT = (
    "id; pwd; env | sort; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; "
    # The glob counts the container's processes without forking one more.
    "tr '\\0' ' ' < /proc/1/cmdline; echo; set -- /proc/[0-9]*; echo $# processes; exit 5"
)


def drive_exec_args(
    rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case
) -> Observation:
    with created(rt, bundle, cid, start=True):
        out = rt("exec", *case.exec_flags, cid, "sh", "-c", EXEC_SCRIPT)
    return {"exit": out.returncode, "stdout": out.stdout, STDERR: out.stderr}


def drive_exec_process(
    rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case
) -> Observation:
    process = {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
        "args": ["sh", "-c", EXEC_SCRIPT],
        "env": ["PATH=/bin", "FROM_JSON=yes please"],
        "cwd": "/tmp",
        "capabilities": {
            k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted", "inheritable")
        },
        "noNewPrivileges": True,
    }
    process_file = ctx.bundle / "process.json"
    process_file.write_text(json.dumps(process))
    with created(rt, bundle, cid, start=True):
        out = rt("exec", "--process", str(process_file), cid)
    return {"exit": out.returncode, "stdout": out.stdout, STDERR: out.stderr}


def drive_ps(rt: Runtime, bundle: Path, ctx: BundleContext, cid: str, case: Case) -> Observation:
    with created(rt, bundle, cid, start=True):
        await_condition(
            lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout or "[]")) == 3,
            f"{rt.name}: three processes in {cid}",
        )
        pids = json.loads(rt.checked("ps", "--format", "json", cid).stdout)
        table = rt.checked("ps", cid).stdout.splitlines()
        custom = rt.checked("ps", cid, "-o", "pid,user,args").stdout.splitlines()
        procs = Path("/sys/fs/cgroup/pids") / _config(bundle)["linux"]["cgroupsPath"].lstrip("/")
        in_cgroup = sorted(int(p) for p in (procs / "cgroup.procs").read_text().split())

    def rows(lines: list[str], keep: Callable[[list[str]], str]) -> list[str]:
        # Host pids, start times and CPU times differ on every run (and so does the
        # order ps lists pids in); user and command are what the container is.
        return lines[:1] + sorted(keep(ln.split()) for ln in lines[1:])

    return {
        "json pids are the cgroup's": sorted(pids) == in_cgroup,
        "count": len(pids),
        "ps -ef": rows(table, lambda f: " ".join([f[0], *f[7:]])),
        "ps -o": rows(custom, lambda f: " ".join(f[1:])),
    }


DRIVERS: dict[str, Callable[[Runtime, Path, BundleContext, str, Case], Observation]] = {
    "run": drive_run,
    "cgroup-files": drive_cgroup_files,
    "hooks": drive_hooks,
    "state": drive_state,
    "lifecycle": drive_lifecycle,
    "exec-args": drive_exec_args,
    "exec-process": drive_exec_process,
    "ps": drive_ps,
}


# --------------------------------------------------------------------------------- edits


def _set(path: str, value: Any) -> Edit:
    def edit(config: dict[str, Any], ctx: BundleContext) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _chain(*edits: Edit) -> Edit:
    def edit(config: dict[str, Any], ctx: BundleContext) -> None:
        for e in edits:
            e(config, ctx)

    return edit


def _caps(names: list[str], *, inheritable: bool = False, ambient: bool = False) -> Edit:
    def edit(config: dict[str, Any], ctx: BundleContext) -> None:
        config["process"]["capabilities"] = {
            "bounding": list(names),
            "effective": list(names),
            "permitted": list(names),
            "inheritable": list(names) if inheritable else [],
            "ambient": list(names) if ambient else [],
        }

    return edit


def _add_mount(mount: dict[str, Any] | Callable[[BundleContext], dict[str, Any]]) -> Edit:
    def edit(config: dict[str, Any], ctx: BundleContext) -> None:
        config["mounts"].append(mount(ctx) if callable(mount) else mount)

    return edit


def _user_namespace(config: dict[str, Any], ctx: BundleContext) -> None:
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    # The rootfs belongs to the container's root, as an engine would unpack it.
    for top, _dirs, files in os.walk(ctx.rootfs):
        # Each directory is chowned once, as the ``top`` of its own walk step.
        for name in [*files, None]:
            path = os.path.join(top, name) if name else top
            st = os.lstat(path)
            os.lchown(path, st.st_uid + 100000, st.st_gid + 100000)


def _drop_namespace(kind: str) -> Edit:
    def edit(config: dict[str, Any], ctx: BundleContext) -> None:
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != kind
        ]

    return edit


def _join_netns(config: dict[str, Any], ctx: BundleContext) -> None:
    config["linux"]["namespaces"] = [
        {"type": "network", "path": ctx.shared["host_netns"]} if ns["type"] == "network" else ns
        for ns in config["linux"]["namespaces"]
    ]


def _devices(config: dict[str, Any], ctx: BundleContext) -> None:
    config["linux"]["devices"] = [
        {"path": "/dev/parity-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
        # Created, but the device cgroup does not allow it.
        {"path": "/dev/parity-fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600},
    ]
    config["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    )


def _masked(config: dict[str, Any], ctx: BundleContext) -> None:
    (ctx.rootfs / "home" / "user" / "secret").write_text("secret\n")
    config["linux"]["maskedPaths"] += ["/etc/hostname", "/home/user"]


def _hooks(config: dict[str, Any], ctx: BundleContext) -> None:
    def hook(kind: str) -> dict[str, Any]:
        # startContainer runs inside the container, after pivot_root: it writes through
        # the /hooks bind mount of the same marker directory.
        where = "/hooks" if kind == "startContainer" else str(ctx.marker_dir)
        script = f"cat > {where}/{kind}.json; echo {kind} >> {where}/order"
        return {"path": "/bin/sh", "args": ["sh", "-c", script], "env": [HOOK_PATH_ENV]}

    config["hooks"] = {kind: [hook(kind)] for kind in HOOK_KINDS}
    config["mounts"].append(
        {
            "destination": "/hooks",
            "type": "bind",
            "source": str(ctx.marker_dir),
            "options": ["rbind", "rw"],
        }
    )
    config["annotations"] = {"org.moorage.parity": "hooks"}


def _relative_source(config: dict[str, Any], ctx: BundleContext) -> None:
    (ctx.bundle / "extra").mkdir()
    (ctx.bundle / "extra" / "note.txt").write_text("relative to the bundle\n")
    config["mounts"].append(
        {"destination": "/rel", "type": "bind", "source": "extra", "options": ["bind", "ro"]}
    )


def _shm_size(config: dict[str, Any], ctx: BundleContext) -> None:
    for mount in config["mounts"]:
        if mount["destination"] == "/dev/shm":
            mount["options"] = ["nosuid", "noexec", "nodev", "mode=1777", "size=1m"]


def _cgroup_limits(config: dict[str, Any], ctx: BundleContext) -> None:
    config["linux"]["resources"].update(
        {
            "memory": {"limit": 64 * 1024 * 1024},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 64},
        }
    )


SECCOMP_ERRNO_PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28},
        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO"},
    ],
}


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def _bind(ctx_key: str, destination: str, options: list[str]) -> Edit:
    return _add_mount(
        lambda ctx: {
            "destination": destination,
            "type": "bind",
            "source": ctx.shared[ctx_key],
            "options": options,
        }
    )


MOUNTS_OF = "grep -E ' {0}( |/)' /proc/self/mountinfo"

CASES = [
    Case(
        "pid-namespace",
        _sh("echo $$; exec ps -o pid,user,args"),
        expect_in=("\n    1 root     ",),
    ),
    Case(
        "uts-hostname",
        _sh("hostname; uname -n; cat /proc/sys/kernel/hostname"),
        _set("hostname", "parity-host"),
        expect_in=("parity-host",),
    ),
    Case(
        "domainname",
        _sh("cat /proc/sys/kernel/domainname"),
        _chain(
            _set("hostname", "parity-host"),
            _set("domainname", "parity.example"),
            # crun 1.8 refuses ociVersion 1.2.0; domainname is already in 1.0.2.
            _set("ociVersion", "1.0.2"),
        ),
        expect_in=("parity.example",),
        # runc 1.1.5 ignores "domainname" (the container shows "(none)"); crun sets it.
        reference="crun",
    ),
    Case(
        "ipc-namespace",
        # busybox has no ipcs applet; /proc/sysvipc is what ipcs reads.
        _sh("cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem"),
        fixtures=("host_shm_segment",),
        expect_in=("shmid",),
    ),
    Case(
        "network-namespace",
        _sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ip -o link; ip -o addr"),
        expect_in=("lo\n",),
    ),
    Case("mount-table", ["cat", "/proc/self/mountinfo"], normalise=normalise_mount_table),
    Case(
        "user-namespace",
        _sh(
            "cat /proc/self/uid_map /proc/self/gid_map; id; "
            "stat -c '%u:%g %n' / /home/user /bin/busybox; touch /root/x && echo wrote"
        ),
        _user_namespace,
        expect_in=("100000", "wrote"),
    ),
    Case(
        "join-netns",
        _sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort; ip -o addr"),
        _join_netns,
        fixtures=("host_netns",),
        expect_in=("parity0",),
    ),
    Case(
        "process-user",
        _sh("id; grep -E '^(Uid|Gid|Groups):' /proc/self/status"),
        _set("process.user", {"uid": 1000, "gid": 1000, "additionalGids": [5, 65534]}),
        expect_in=("uid=1000",),
    ),
    Case(
        "umask",
        _sh("umask; touch /tmp/f; mkdir /tmp/d; stat -c '%a %n' /tmp/f /tmp/d"),
        _set("process.user.umask", 0o077),
        expect_in=("0077", "600 /tmp/f"),
    ),
    Case("cwd", _sh("pwd"), _set("process.cwd", "/home/user"), expect_in=("/home/user",)),
    Case(
        "cwd-created",
        _sh("pwd; stat -c '%a %u:%g %F' /new/dir"),
        _set("process.cwd", "/new/dir"),
        expect_in=("/new/dir\n",),
    ),
    Case(
        "env",
        _sh("env | sort"),
        _set(
            "process.env",
            ["PATH=/bin:/usr/bin", "GREETING=hello  world", "EMPTY=", "EQUALS=a=b=c"],
        ),
        expect_in=("GREETING=hello  world",),
    ),
    Case(
        "args-with-spaces",
        ["sh", "-c", 'for a in "$@"; do echo "[$a]"; done', "argv0", "a b", "  c  ", "", "d"],
        expect_in=("[  c  ]",),
    ),
    Case("exit-code", _sh("echo before; exit 3"), expect_rc=3),
    Case(
        "killed-by-signal",
        _sh("echo before; kill -9 $$; echo after"),
        # Without its own pid namespace: the init of one ignores its own SIGKILL.
        _drop_namespace("pid"),
        expect_rc=137,
    ),
    Case(
        "caps-docker-default",
        _sh("grep ^Cap /proc/self/status"),
        expect_in=("CapEff:\t00000000a80425fb",),
    ),
    Case(
        "caps-reduced",
        _sh(
            "grep ^Cap /proc/self/status; chown 1000 /tmp && echo chown-ok; "
            "mknod /tmp/n c 1 3 2>&1; echo rc=$?"
        ),
        _caps(["CAP_CHOWN", "CAP_KILL"]),
        expect_in=("CapBnd:\t0000000000000021",),
    ),
    Case(
        "caps-ambient",
        _sh("id -u; grep ^Cap /proc/self/status"),
        _chain(
            _set("process.user", {"uid": 1000, "gid": 1000}),
            _caps(["CAP_NET_BIND_SERVICE"], inheritable=True, ambient=True),
        ),
        expect_in=("CapAmb:\t0000000000000400",),
    ),
    Case(
        "no-new-privileges-on",
        _sh("grep ^NoNewPrivs /proc/self/status"),
        _set("process.noNewPrivileges", True),
        expect_in=("NoNewPrivs:\t1",),
    ),
    Case(
        "no-new-privileges-off",
        _sh("grep ^NoNewPrivs /proc/self/status"),
        _set("process.noNewPrivileges", False),
        expect_in=("NoNewPrivs:\t0",),
    ),
    Case(
        "rlimits",
        _sh(
            "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c; "
            "grep -E '^Max (open files|processes|core file size)' /proc/self/limits"
        ),
        _set(
            "process.rlimits",
            [
                {"type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2345},
                {"type": "RLIMIT_NPROC", "soft": 3333, "hard": 4444},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            ],
        ),
        expect_in=("1234\n2345\n3333\n4444\n",),
    ),
    Case(
        "oom-score-adj",
        _sh("cat /proc/self/oom_score_adj /proc/1/oom_score_adj"),
        _set("process.oomScoreAdj", 123),
        expect_in=("123\n123\n",),
    ),
    Case(
        "readonly-root",
        _sh(
            "touch /x 2>&1; echo rc=$?; touch /tmp/x 2>&1; echo rc=$?; "
            "touch /dev/shm/x && echo shm-writable; awk '$5 == \"/\"' /proc/self/mountinfo"
        ),
        _set("root.readonly", True),
        normalise=normalise_mount_lines,
        expect_in=("Read-only file system",),
    ),
    Case(
        "masked-paths",
        _sh(
            "wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /proc/acpi | wc -l; "
            "ls -A /sys/firmware | wc -l; wc -c < /etc/hostname; ls -A /home/user; "
            "stat -c %s /proc/kcore 2>&1; (echo x > /proc/keys) 2>&1; echo rc=$?; "
            "touch /home/user/y 2>&1; echo rc=$?"
        ),
        _masked,
        expect_in=("0\n0\n0\n0\n0\n",),
    ),
    Case(
        "readonly-paths",
        _sh(
            "cat /proc/sys/kernel/ostype; (echo x > /proc/sys/kernel/domainname) 2>&1; "
            "echo rc=$?; (echo 1 > /proc/sys/net/ipv4/ip_forward) 2>&1; echo rc=$?; "
            "ls /var/tmp; touch /var/tmp/x 2>&1; echo rc=$?"
        ),
        _set("linux.readonlyPaths", ["/proc/sys", "/proc/sysrq-trigger", "/var/tmp"]),
        expect_in=("Read-only file system",),
    ),
    Case(
        "sysctl",
        _sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced"),
        _set("linux.sysctl", {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}),
        expect_in=("1\n1\n",),
    ),
    Case(
        "devices",
        _sh(
            "ls -l /dev; stat -c '%F %t:%T %a %u:%g' /dev/parity-null; "
            "echo hi > /dev/parity-null && echo null-ok; (: < /dev/parity-fuse) 2>&1; echo rc=$?; "
            "mknod /tmp/mem c 1 1 2>&1; echo mknod rc=$?"
        ),
        _devices,
        normalise=normalise_ls_dates,
        expect_in=("null-ok", "Operation not permitted"),
    ),
    Case(
        "mount-tmpfs-options",
        _sh(
            "stat -c '%a %u:%g' /scratch; printf '#!/bin/sh\\necho ran\\n' > /scratch/x; "
            "chmod +x /scratch/x; /scratch/x 2>&1; echo rc=$?; df -k /scratch; "
            + MOUNTS_OF.format("/scratch")
        ),
        _add_mount(
            {
                "destination": "/scratch",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "size=2m", "mode=750", "uid=1000"],
            }
        ),
        normalise=normalise_mount_lines,
        expect_in=("750 1000:0", "size=2048k"),
    ),
    Case(
        "mount-bind-ro",
        _sh("cat /data/hello.txt; touch /data/new 2>&1; echo rc=$?; " + MOUNTS_OF.format("/data")),
        _bind("host_dir", "/data", ["bind", "ro"]),
        fixtures=("host_dir",),
        normalise=normalise_mount_lines,
        expect_in=("hello from the host", "Read-only file system"),
    ),
    Case(
        "mount-rbind",
        _sh("cat /data/sub/inner.txt; " + MOUNTS_OF.format("/data")),
        _bind("host_dir_with_submount", "/data", ["rbind", "rw"]),
        fixtures=("host_dir_with_submount",),
        normalise=normalise_mount_lines,
        expect_in=("inside the submount",),
    ),
    Case(
        "mount-bind-not-recursive",
        _sh("ls -A /data/sub; cat /data/top.txt; " + MOUNTS_OF.format("/data")),
        _bind("host_dir_with_submount", "/data", ["bind", "rw"]),
        fixtures=("host_dir_with_submount",),
        normalise=normalise_mount_lines,
        expect_in=("top level",),
    ),
    Case(
        "mount-relative-source",
        _sh("cat /rel/note.txt; " + MOUNTS_OF.format("/rel")),
        _relative_source,
        normalise=normalise_mount_lines,
        expect_in=("relative to the bundle",),
    ),
    Case(
        "dev-shm-size",
        _sh("df -k /dev/shm; " + MOUNTS_OF.format("/dev/shm")),
        _shm_size,
        normalise=normalise_mount_lines,
        expect_in=("size=1024k",),
    ),
    Case(
        "cgroup-limits",
        LONG_RUNNING,
        _cgroup_limits,
        driver="cgroup-files",
    ),
    Case(
        "seccomp-default",
        _sh(
            "unshare -U true 2>&1; echo rc=$?; nsenter -t 1 -u true 2>&1; echo rc=$?; "
            "grep '^Seccomp:' /proc/self/status"
        ),
        expect_in=("Operation not permitted", "Seccomp:\t2"),
    ),
    Case(
        "seccomp-errno",
        _sh("mkdir /tmp/d 2>&1; echo rc=$?; unshare -U true 2>&1; echo rc=$?; echo survived"),
        _set("linux.seccomp", SECCOMP_ERRNO_PROFILE),
        expect_in=("No space left on device", "Operation not permitted", "survived"),
    ),
    Case("hooks", _sh("echo container ran"), _hooks, driver="hooks"),
    Case(
        "state-fields",
        LONG_RUNNING,
        _set("annotations", {"org.moorage.parity": "state", "empty": ""}),
        driver="state",
    ),
    Case("kill-delete-lifecycle", LONG_RUNNING, driver="lifecycle"),
    Case("exec-args", LONG_RUNNING, driver="exec-args"),
    Case(
        "exec-flags",
        LONG_RUNNING,
        driver="exec-args",
        exec_flags=(
            "--cwd",
            "/home",
            "--env",
            "EXTRA=hello  world",
            "--user",
            "1000:1000",
            "--additional-gids",
            "5",
        ),
    ),
    Case("exec-process-json", LONG_RUNNING, driver="exec-process"),
    Case("ps", _sh("trap 'exit 7' TERM; sleep 1000 & sleep 1001 & wait"), driver="ps"),
]


def _check_reference(case: Case, runc: Observation, stderr: str) -> None:
    """runc's observation must show the feature's effect, or the case proves nothing."""
    if case.driver == "run":
        assert runc["exit"] == case.expect_rc, f"runc exited {runc['exit']}: {runc}\n{stderr}"
        for needle in case.expect_in:
            assert needle in runc["stdout"], f"runc output lacks {needle!r}:\n{runc['stdout']}"
    elif case.driver == "cgroup-files":
        assert runc["files"]["memory/memory.limit_in_bytes"] == str(64 * 1024 * 1024), runc
        assert runc["files"]["pids/pids.max"] == "64", runc
    elif case.driver == "hooks":
        assert runc["hooks that ran"] == sorted(HOOK_KINDS), runc
    elif case.driver == "state":
        statuses = [runc[p].get("status") for p in ("created", "running", "stopped")]
        assert statuses == ["created", "running", "stopped"], runc
    elif case.driver in ("exec-args", "exec-process"):
        assert runc["exit"] == 5, runc
    elif case.driver == "ps":
        assert runc["count"] == 3, runc


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def workspace(busybox_template: Path) -> Iterator[Workspace]:
    with Workspace.open(busybox_template) as ws:
        yield ws


@pytest.fixture
def host_netns() -> Iterator[str]:
    """A named network namespace holding a veth link with an address."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    name = f"parity-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            # veth, not dummy: the dummy driver is not built for every kernel.
            ["link", "add", "parity0", "type", "veth", "peer", "name", "parity1"],
            ["addr", "add", "10.123.0.1/24", "dev", "parity0"],
            ["link", "set", "parity0", "up"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield f"/var/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def host_shm_segment() -> Iterator[int]:
    """A System V shared memory segment on the host, which no container may see."""
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(0, 4096, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
    if shmid < 0:
        pytest.fail(f"shmget: {os.strerror(ctypes.get_errno())}")
    try:
        yield shmid
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID


@pytest.fixture
def host_dir() -> Iterator[str]:
    path = Path(f"/var/tmp/moor-parity-host-{uuid.uuid4().hex[:8]}")
    path.mkdir(mode=0o755)
    (path / "hello.txt").write_text("hello from the host\n")
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host_dir_with_submount(host_dir: str) -> Iterator[str]:
    """``host_dir`` with a tmpfs mounted on its ``sub`` directory."""
    sub = Path(host_dir) / "sub"
    sub.mkdir()
    (Path(host_dir) / "top.txt").write_text("top level\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "parity", str(sub)], check=True)
    try:
        (sub / "inner.txt").write_text("inside the submount\n")
        yield host_dir
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=False)


# --------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_runc_parity(case: Case, request: pytest.FixtureRequest) -> None:
    # Host fixtures first, so they are torn down after the containers that use them.
    shared = {name: request.getfixturevalue(name) for name in case.fixtures}
    ws: Workspace = request.getfixturevalue("workspace")
    ref = case.reference
    if shutil.which(ref) is None:
        pytest.skip(f"{ref} is not installed")
    cid = f"parity-{uuid.uuid4().hex[:8]}"  # the same id under both runtimes
    observed: dict[str, Observation] = {}
    for name in (ref, "moor"):
        bundle, ctx = ws.bundle(name, case.args, case.edit, shared)
        observed[name] = DRIVERS[case.driver](ws.runtimes[name], bundle, ctx, cid, case)
    stderr = {name: obs.pop(STDERR, "") for name, obs in observed.items()}
    _check_reference(case, observed[ref], stderr[ref])
    assert observed["moor"] == observed[ref], (
        f"moor-runtime differs from {ref}:\n{_diff(observed[ref], observed['moor'], ref)}\n"
        f"{ref} stderr: {stderr[ref]}\nmoor-runtime stderr: {stderr['moor']}"
    )


def _diff(expected: Observation, actual: Observation, ref: str) -> str:
    def lines(obs: Observation) -> list[str]:
        return json.dumps(obs, indent=1, sort_keys=True).replace("\\n", "\n").splitlines()

    return "\n".join(
        difflib.unified_diff(lines(expected), lines(actual), ref, "moor-runtime", lineterm="")
    )
