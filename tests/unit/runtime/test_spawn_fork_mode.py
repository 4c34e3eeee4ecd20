"""The runtime's fork mode forks the caller only where that is safe: a caller running
from the sealed copy of the interpreter, and single-threaded at each fork."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.runtime import spawn
from moorage.sys import sealed


@pytest.fixture
def fork_mode_off() -> Iterator[None]:
    yield
    spawn.fork_stages(False)


def test_fork_mode_is_refused_outside_a_sealed_copy(fork_mode_off: None) -> None:
    assert not sealed.running_sealed()  # pytest runs from the host's interpreter
    with pytest.raises(FailedPrecondition, match="sealed copy"):
        spawn.fork_stages()
    assert not spawn._fork_mode


def test_a_threaded_caller_never_forks_a_stage(
    fork_mode_off: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "running_sealed", lambda: True)
    spawn.fork_stages()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(FailedPrecondition, match="single-threaded"):
            spawn.spawn_stage(label="x", stdin=subprocess.DEVNULL)
    finally:
        stop.set()
        thread.join()


def test_running_sealed_is_true_only_in_a_sealed_copy() -> None:
    exe = sealed.sealed_interpreter()
    try:
        probe = "from moorage.sys.sealed import running_sealed; print(running_sealed())"
        env = {"PYTHONHOME": sys.base_prefix, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run(
            ["python", "-c", probe],
            executable=f"/proc/self/fd/{exe}",
            pass_fds=(exe,),
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    finally:
        os.close(exe)
    assert out == b"True\n"


def test_adopt_takes_only_a_sealed_copy(tmp_path: Path) -> None:
    plain = tmp_path / "file"
    plain.write_bytes(b"x")
    fd = os.open(plain, os.O_RDONLY)
    try:
        with pytest.raises(InvalidArgument, match="not a sealed copy"):
            sealed.adopt(fd)
    finally:
        os.close(fd)
    unsealed = os.memfd_create("x", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        fcntl.fcntl(unsealed, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW)
        with pytest.raises(InvalidArgument, match="not sealed against writing"):
            sealed.adopt(unsealed)
    finally:
        os.close(unsealed)
