"""Run one OCI bundle under runc and under moor-runtime, side by side.

Each runtime gets its own ``--root`` and every bundle its own cgroupsPath, so the two
runs never share state; a :class:`Workspace` remembers every container and cgroup it
handed out and tears them all down (force-delete, kill stragglers, rmdir cgroups),
whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundles import make_bundle

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "moorage-parity"
COMMAND_TIMEOUT = 30.0
CRUN_WITHOUT_UNIFIED = (
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"',
    "sh",
)


def moor_runtime_binary() -> str:
    return str(Path(sys.executable).parent / "moor-runtime")


def await_condition(
    check: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Runtime:
    """One runtime binary with its own state root."""

    name: str
    argv: tuple[str, ...]
    root: Path

    def __call__(
        self, *args: str, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: after ``create`` the container holds our stdout and stderr
        # open, and a pipe would only reach EOF when it exits. The container's stdin is
        # never the test's own.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [*self.argv, "--root", str(self.root), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                proc.args,
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )

    def state(self, cid: str) -> dict[str, Any] | None:
        out = self("state", cid)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def status(self, cid: str) -> str | None:
        st = self.state(cid)
        return None if st is None else st.get("status")

    def await_status(self, cid: str, status: str, timeout: float = 10.0) -> None:
        await_condition(
            lambda: self.status(cid) == status, f"{self.name}: {cid} to be {status}", timeout
        )

    def checked(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = self(*args)
        assert out.returncode == 0, f"{self.name} {' '.join(args)}: {out.stderr.strip()}"
        return out


@dataclass
class BundleContext:
    """What a bundle edit may use: its own directories, and state shared by both runs."""

    runtime: str
    bundle: Path
    rootfs: Path
    marker_dir: Path
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workspace:
    """Bundles, roots and cgroups of one test; ``cleanup`` leaves nothing behind."""

    base: Path
    template: Path
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    cgroups_paths: list[str] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def open(cls, template: Path) -> Iterator[Workspace]:
        # Not pytest's tmp_path: its parents are 0700, which a user-namespaced
        # container root (host uid 100000) could not traverse to reach its rootfs.
        base = Path(f"/var/tmp/moor-parity/{uuid.uuid4().hex[:10]}")
        base.mkdir(parents=True)
        os.chmod(base.parent, 0o755)
        os.chmod(base, 0o755)
        ws = cls(base=base, template=template)
        state_base = Path(f"/run/moor-parity/{base.name}")
        for name, argv in (
            ("runc", ("runc",)),
            # crun 1.8 refuses to run at all on a hybrid host whose unified hierarchy holds
            # a controller (hugetlb here): it runs in a private mount namespace without
            # that mount. It is only a reference for what runc 1.1.5 lacks, not cgroups.
            ("crun", (*CRUN_WITHOUT_UNIFIED, "crun", "--cgroup-manager=disabled")),
            ("moor", (moor_runtime_binary(),)),
        ):
            root = state_base / name
            root.mkdir(parents=True)
            ws.runtimes[name] = Runtime(name, argv, root)
        try:
            yield ws
        finally:
            ws.cleanup()
            shutil.rmtree(state_base, ignore_errors=True)
            with contextlib.suppress(OSError):
                state_base.parent.rmdir()
            shutil.rmtree(base, ignore_errors=True)
            with contextlib.suppress(OSError):
                base.parent.rmdir()

    def bundle(
        self,
        runtime: str,
        args: list[str],
        edit: Callable[[dict[str, Any], BundleContext], None] | None = None,
        shared: dict[str, Any] | None = None,
    ) -> tuple[Path, BundleContext]:
        """A fresh bundle for ``runtime`` with its own cgroupsPath; ``edit`` may change it."""
        bundle = self.base / f"bundle-{runtime}"
        cgroups_path = f"/{CGROUP_PARENT}/{runtime}-{uuid.uuid4().hex[:12]}"
        self.cgroups_paths.append(cgroups_path)
        marker_dir = self.base / f"markers-{runtime}"
        marker_dir.mkdir(mode=0o777)
        os.chmod(marker_dir, 0o777)
        ctx = BundleContext(
            runtime=runtime,
            bundle=bundle,
            rootfs=bundle / "rootfs",
            marker_dir=marker_dir,
            shared=shared if shared is not None else {},
        )

        def apply(config: dict[str, Any]) -> None:
            if edit is not None:
                edit(config, ctx)

        make_bundle(bundle, args, template=self.template, cgroups_path=cgroups_path, edit=apply)
        os.chmod(bundle, 0o755)
        return bundle, ctx

    def cleanup(self) -> None:
        for rt in self.runtimes.values():
            if not rt.root.exists():
                continue
            for cid in os.listdir(rt.root):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    rt("delete", "--force", cid)
        for cgroups_path in self.cgroups_paths:
            remove_cgroup(cgroups_path)
        for hierarchy in cgroup_hierarchies():
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP_PARENT).rmdir()


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, the v2 unified one)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] in ("cgroup", "cgroup2"):
                out.append(Path(left.split()[4]))
    return out


def remove_cgroup(cgroups_path: str) -> None:
    """Kill whatever still lives in ``cgroups_path`` in any hierarchy, then remove it."""
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / cgroups_path.lstrip("/")
        if not top.is_dir():
            continue
        dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: -len(p.parts))
        for d in dirs:
            for pid in _procs(d):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for d in dirs:
            with contextlib.suppress(AssertionError):
                await_condition(lambda d=d: not _procs(d), f"{d} to empty", timeout=5)
            with contextlib.suppress(OSError):
                d.rmdir()


def _procs(cgroup_dir: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup_dir / "cgroup.procs").read_text().split()]
    except OSError:
        return []
