"""Bad input to moor-runtime: a clear error, a non-zero exit, and nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bundles import make_bundle
from conftest import moor_runtime
from moorage.errors import MoorageError
from moorage.runtime.create import CreateOptions, create

pytestmark = pytest.mark.root

CONTROLLERS = ("memory", "pids", "cpu", "devices", "freezer")


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _setup_processes(container_id: str) -> list[int]:
    """Setup-stage processes of ``container_id`` (labelled with it in their argv)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        argv = cmdline.split(b"\0")
        if argv[0] == b"moor-runtime-init" and container_id.encode() in argv:
            found.append(int(entry))
    return found


def _open_fds() -> dict[str, str]:
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue  # the directory listing's own descriptor
    return fds


class Case:
    def __init__(
        self, name: str, edit: Callable[[Path, dict[str, Any]], None], expect: str
    ) -> None:
        self.name, self.edit, self.expect = name, edit, expect

    def __repr__(self) -> str:
        return self.name


def _set(path: str, value: Any) -> Callable[[Path, dict[str, Any]], None]:
    def edit(_bundle: Path, config: dict[str, Any]) -> None:
        node = config
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    return edit


def _raw_config(text: str) -> Callable[[Path, dict[str, Any]], None]:
    def edit(bundle: Path, _config: dict[str, Any]) -> None:
        (bundle / "config.json").write_text(text)

    return edit


def _no_rootfs(bundle: Path, _config: dict[str, Any]) -> None:
    import shutil

    shutil.rmtree(bundle / "rootfs")


def _userns(mapping: list[dict[str, int]]) -> Callable[[Path, dict[str, Any]], None]:
    def edit(_bundle: Path, config: dict[str, Any]) -> None:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = mapping
        config["linux"]["gidMappings"] = mapping

    return edit


def _hook(kind: str) -> Callable[[Path, dict[str, Any]], None]:
    def edit(_bundle: Path, config: dict[str, Any]) -> None:
        config["hooks"] = {kind: [{"path": "/bin/false", "args": ["false"]}]}

    return edit


CASES = [
    Case("malformed json", _raw_config('{"ociVersion": "1.0.2", '), "invalid json"),
    Case("not an object", _raw_config("[1, 2]"), "config.json"),
    Case("missing process args", _set("process.args", []), "process.args"),
    Case("no process", lambda b, c: c.pop("process"), "process"),
    Case(
        "unknown namespace type",
        lambda b, c: c["linux"]["namespaces"].append({"type": "bogus"}),
        'unknown namespace type "bogus"',
    ),
    Case("missing rootfs", _no_rootfs, "rootfs does not exist"),
    Case("wrong type", _set("process.user.uid", "zero"), "process.user.uid"),
    Case(
        "invalid id mapping",
        _userns([{"containerID": 0, "hostID": 4294967290, "size": 100}]),
        "invalid id mapping",
    ),
    Case(
        "failing createRuntime hook", _hook("createRuntime"), "createRuntime hook /bin/false failed"
    ),
    Case("failing prestart hook", _hook("prestart"), "prestart hook /bin/false failed"),
    Case(
        "failing createContainer hook",
        _hook("createContainer"),
        "createContainer hook /bin/false failed",
    ),
    Case(
        "namespace path that does not exist",
        lambda b, c: c["linux"]["namespaces"].append({"type": "network", "path": "/nonexistent"})
        or c["linux"]["namespaces"].remove({"type": "network"}),
        "/nonexistent",
    ),
    Case(
        "bad mount source",
        lambda b, c: c["mounts"].append(
            {"destination": "/x", "type": "bind", "source": "/nonexistent-src", "options": ["bind"]}
        ),
        "/nonexistent-src",
    ),
    Case(
        "bad rlimit",
        _set("process.rlimits", [{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]),
        "RLIMIT_BOGUS",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_input_fails_clearly_and_leaves_nothing(
    case: Case, runtime_root: Path, tmp_path: Path, busybox_template: Path
) -> None:
    cgroup: dict[str, str] = {}

    def edit(config: dict[str, Any]) -> None:
        cgroup["path"] = config["linux"]["cgroupsPath"]

    bundle = make_bundle(tmp_path / "bundle", ["true"], template=busybox_template, edit=edit)
    config = json.loads((bundle / "config.json").read_text())
    case.edit(bundle, config)
    if (bundle / "config.json").read_text().startswith("{\n"):
        (bundle / "config.json").write_text(json.dumps(config))
    mounts_before = _mount_points()
    cid = f"bad-{uuid.uuid4().hex[:8]}"

    result = subprocess.run(
        [moor_runtime(), "--root", str(runtime_root), "run", "--bundle", str(bundle), cid],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert case.expect in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (runtime_root / cid).exists()
    assert _mount_points() == mounts_before
    assert _setup_processes(cid) == []
    for controller in CONTROLLERS:
        assert not (Path("/sys/fs/cgroup") / controller / cgroup["path"].lstrip("/")).exists()


def test_in_process_create_leaks_no_descriptor(
    runtime_root: Path, tmp_path: Path, busybox_template: Path
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}

    bundle = make_bundle(tmp_path / "bundle", ["true"], template=busybox_template, edit=edit)
    fds_before = _open_fds()
    for attempt in range(3):
        with pytest.raises(MoorageError, match="createRuntime hook"):
            create(
                str(runtime_root),
                f"leak{attempt}",
                CreateOptions(
                    bundle=str(bundle), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                ),
            )
    # The sealed interpreter copy is cached once per process by design.
    new = {fd: target for fd, target in _open_fds().items() if fd not in fds_before}
    assert [t for t in new.values() if not t.startswith("/memfd:moor-runtime")] == []
    assert [pid for n in range(3) for pid in _setup_processes(f"leak{n}")] == []
