"""The per-container monitor runs a container to the end on its own: logs, exit code,
OOM, cleanup, and none of it depends on a daemon being there."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bundles import make_bundle
from moorage.engine.logs import read_logs
from moorage.engine.monitor import read_state

pytestmark = pytest.mark.root


def _start(
    tmp_path: Path,
    runtime_root: Path,
    bundle: Path,
    cid: str,
    log_opts: dict[str, str] | None = None,
) -> tuple[Path, subprocess.Popen[bytes]]:
    directory = tmp_path / cid
    directory.mkdir()
    task = {
        "id": cid,
        "bundle": str(bundle),
        "runtime_root": str(runtime_root),
        "log_path": str(directory / f"{cid}-json.log"),
        "log_opts": log_opts or {},
    }
    (directory / "monitor.json").write_text(json.dumps(task))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moorage.engine.monitor", str(directory)], start_new_session=True
    )
    return directory, proc


def _wait_exited(directory: Path, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(str(directory))
        if state is not None and state.get("status") == "exited":
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"container did not exit: {state}")
        time.sleep(0.02)


def test_logs_and_exit_code_are_recorded(
    tmp_path: Path, runtime_root: Path, busybox_template: Path
) -> None:
    bundle = make_bundle(
        tmp_path / "b", ["sh", "-c", "echo out; echo err >&2; exit 3"], template=busybox_template
    )
    directory, proc = _start(tmp_path, runtime_root, bundle, "m1")
    assert proc.wait(timeout=60) == 0
    state = _wait_exited(directory)
    assert (state["exit_code"], state["oom_killed"]) == (3, False)
    lines = [(line.stream, line.data) for line in read_logs(str(directory / "m1-json.log"))]
    assert sorted(lines) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    assert not (runtime_root / "m1").exists()  # the runtime container is gone


def test_the_monitor_outlives_whoever_started_it(
    tmp_path: Path, runtime_root: Path, busybox_template: Path
) -> None:
    """Its starter (here a shell standing in for the daemon) exits at once; the container
    still runs, logs and has its exit recorded by the monitor alone."""
    bundle = make_bundle(
        tmp_path / "c", ["sh", "-c", "echo start; sleep 1000"], template=busybox_template
    )
    directory = tmp_path / "m2"
    directory.mkdir()
    task = {
        "id": "m2",
        "bundle": str(bundle),
        "runtime_root": str(runtime_root),
        "log_path": str(directory / "m2-json.log"),
        "log_opts": {},
    }
    (directory / "monitor.json").write_text(json.dumps(task))
    starter = subprocess.run(
        [
            "sh",
            "-c",
            f'"{sys.executable}" -m moorage.engine.monitor "{directory}" '
            "</dev/null >/dev/null 2>&1 &",
        ],
        check=True,
    )
    assert starter.returncode == 0  # the starter is gone; the monitor is an orphan now
    deadline = time.monotonic() + 30
    while (read_state(str(directory)) or {}).get("status") != "running":
        assert time.monotonic() < deadline, "never started"
        time.sleep(0.02)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "moorage.runtime.cli",
            "--root",
            str(runtime_root),
            "kill",
            "m2",
            "KILL",
        ],
        check=True,
    )
    final = _wait_exited(directory)
    assert final["exit_code"] == 137
    assert [line.data for line in read_logs(str(directory / "m2-json.log"))] == [b"start\n"]


def test_oom_kill_is_recorded(tmp_path: Path, runtime_root: Path, busybox_template: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["memory"] = {"limit": 16 * 1024 * 1024}

    bundle = make_bundle(
        tmp_path / "b",
        ["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo $x | wc -c"],
        template=busybox_template,
        edit=edit,
    )
    directory, proc = _start(tmp_path, runtime_root, bundle, "m3")
    proc.wait(timeout=60)
    state = _wait_exited(directory)
    assert state["oom_killed"] is True
    assert state["exit_code"] != 0


def test_a_container_that_cannot_start_is_recorded_as_exited(
    tmp_path: Path, runtime_root: Path, busybox_template: Path
) -> None:
    bundle = make_bundle(tmp_path / "b", ["/no/such/program"], template=busybox_template)
    directory, proc = _start(tmp_path, runtime_root, bundle, "m4")
    proc.wait(timeout=60)
    state = _wait_exited(directory)
    assert state["exit_code"] == 127
    assert "/no/such/program" in state["error"]
