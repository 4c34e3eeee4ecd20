"""The daemon recognises a container's monitor after a restart, however it started:
``python -m moorage.engine.monitor DIR``, or forked by the monitor zygote (the
zygote's command line, working in the container's directory)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.engine.containers import _is_monitor

CID = "4f" * 32


Start = Callable[[list[str], Path], int]


@pytest.fixture
def process() -> Iterator[Start]:
    """Start a sleeping process with ``argv`` after its script, working in ``cwd``."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], cwd: Path) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", *argv], cwd=cwd
        )
        procs.append(proc)
        # Right after exec the kernel may show an empty command line for a moment.
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.001)
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_monitor_started_by_command_line(process: Start, tmp_path: Path) -> None:
    pid = process(["moorage.engine.monitor", str(tmp_path / CID)], tmp_path)
    assert _is_monitor(pid, CID)
    assert not _is_monitor(pid, "5a" * 32)


def test_a_monitor_forked_by_the_zygote(process: Start, tmp_path: Path) -> None:
    directory = tmp_path / CID
    directory.mkdir()
    pid = process(["moorage.engine.monitor", "zygote", str(tmp_path)], directory)
    assert _is_monitor(pid, CID)
    assert not _is_monitor(pid, "5a" * 32)
    # The zygote itself, or its spare, works in /: nobody's monitor.
    spare = process(["moorage.engine.monitor", "zygote", str(tmp_path)], Path("/"))
    assert not _is_monitor(spare, CID)


def test_any_other_process_is_not_a_monitor(process: Start, tmp_path: Path) -> None:
    directory = tmp_path / CID
    directory.mkdir()
    pid = process(["something.else", CID], directory)
    assert not _is_monitor(pid, CID)
