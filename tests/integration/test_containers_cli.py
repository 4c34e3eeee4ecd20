"""Containers through `moor` and the daemon, as a docker user would drive them: run
(attached, detached, interactive, --rm), ps, logs, exec, stop, rm, wait, cp, inspect,
and the exit statuses of failures.

Skipped while the daemon has no container routes (it answers 404 on
/containers/json) or the CLI has no container commands registered."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon import Daemon, running_daemon

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("containers") / "moor", busybox=True) as d:
        yield d


def _out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def test_run_attached_relays_output_and_exit_status(daemon: Daemon) -> None:
    result = daemon.moor(
        "run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert b"err\n" in result.stderr


def test_run_interactive_reads_stdin(daemon: Daemon) -> None:
    result = daemon.moor("run", "-i", "--rm", "busybox", "cat", input=b"piped\ninput\n")
    assert result.stdout == b"piped\ninput\n"


def test_run_rm_leaves_nothing_behind(daemon: Daemon) -> None:
    daemon.moor("run", "--rm", "--name", "gone", "busybox", "true")
    assert _out(daemon.moor("ps", "-a", "-q", "--filter", "name=gone")) == ""


def test_detached_lifecycle_ps_logs_exec_stop_rm(daemon: Daemon) -> None:
    script = 'echo "$GREETING"; exec sleep 300'
    run = ["run", "-d", "--name", "web", "-e", "GREETING=hello", "busybox", "sh", "-c", script]
    cid = _out(daemon.moor(*run)).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    try:
        rows = _out(daemon.moor("ps", "--format", "{{.ID}} {{.Names}} {{.State}}")).splitlines()
        assert f"{cid[:12]} web running" in rows
        table = _out(daemon.moor("ps")).splitlines()
        assert table[0].split() == [
            "CONTAINER",
            "ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        assert _wait_for(lambda: _out(daemon.moor("logs", "web")) == "hello\n")
        executed = daemon.moor(
            "exec", "-e", "X=42", "web", "sh", "-c", 'echo "$X $GREETING"; exit 4', check=False
        )
        assert (executed.returncode, executed.stdout) == (4, b"42 hello\n")
        assert daemon.moor("exec", "-i", "web", "cat", input=b"to exec\n").stdout == b"to exec\n"
        status = _out(daemon.moor("inspect", "--format", "{{.State.Status}}", "web")).strip()
        assert status == "running"
        assert _out(daemon.moor("stop", "-t", "1", "web")).strip() == "web"
        exited = _out(daemon.moor("ps", "-a", "--filter", "name=web", "--format", "{{.Status}}"))
        assert exited.startswith("Exited (")
    finally:
        daemon.moor("rm", "-f", "web", check=False)
    assert _out(daemon.moor("ps", "-a", "-q", "--filter", "name=web")) == ""


def test_wait_prints_the_exit_code(daemon: Daemon) -> None:
    cid = _out(daemon.moor("run", "-d", "busybox", "sh", "-c", "exit 5")).strip()
    try:
        assert _out(daemon.moor("wait", cid)).strip() == "5"
    finally:
        daemon.moor("rm", cid, check=False)


def test_cp_both_ways(daemon: Daemon, tmp_path: Path) -> None:
    daemon.moor("run", "-d", "--name", "files", "busybox", "sleep", "300")
    try:
        local = tmp_path / "note.txt"
        local.write_text("from the host\n")
        daemon.moor("cp", str(local), "files:/tmp/")
        read = daemon.moor("exec", "files", "cat", "/tmp/note.txt")
        assert read.stdout == b"from the host\n"
        daemon.moor("exec", "files", "sh", "-c", "mkdir -p /data/sub && echo x > /data/sub/f")
        out = tmp_path / "out"
        out.mkdir()
        daemon.moor("cp", "files:/data", str(out / "copy"))
        assert (out / "copy" / "sub" / "f").read_text() == "x\n"
        archive = daemon.moor("cp", "files:/etc/passwd", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            assert tar.getnames() == ["passwd"]
    finally:
        daemon.moor("rm", "-f", "files", check=False)


def test_inspect_falls_back_to_images(daemon: Daemon) -> None:
    info = json.loads(_out(daemon.moor("inspect", "busybox")))
    assert info[0]["Id"].startswith("sha256:")
    missing = daemon.moor("inspect", "nosuchthing", check=False)
    assert missing.returncode == 1
    assert b"No such object: nosuchthing" in missing.stderr


def test_command_not_found_exits_127(daemon: Daemon) -> None:
    result = daemon.moor("run", "--rm", "busybox", "nosuchcommand", check=False)
    assert result.returncode == 127
    assert result.stderr.startswith(b"moor: Error response from daemon: ")


def test_bad_flags_exit_125_before_reaching_the_daemon(daemon: Daemon) -> None:
    before = _out(daemon.moor("ps", "-a", "-q"))
    for flags in (["-m", "3x"], ["--restart", "sometimes"], ["-p", "99999:80"], ["-v", "x:y"]):
        result = daemon.moor("run", *flags, "busybox", "true", check=False)
        assert result.returncode == 125, flags
        assert b"Run 'moor run --help'" in result.stderr
    assert _out(daemon.moor("ps", "-a", "-q")) == before


def test_a_missing_image_is_looked_for(daemon: Daemon) -> None:
    result = daemon.moor("run", "nosuchimage", check=False)
    assert result.returncode == 125
    assert b"Unable to find image 'nosuchimage:latest' locally" in result.stderr
    never = daemon.moor("run", "--pull", "never", "nosuchimage", check=False)
    assert never.returncode == 125
    assert b"Unable to find image" not in never.stderr


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_the_containers_process_starts_with_no_signal_ignored_or_blocked(daemon: Daemon) -> None:
    status = _out(daemon.moor("run", "--rm", "busybox", "cat", "/proc/self/status"))
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["SigIgn"].strip() == "0000000000000000"
    assert fields["SigBlk"].strip() == "0000000000000000"


def test_a_name_taken_by_a_new_image_leaves_the_old_one_dangling(daemon: Daemon) -> None:
    ids = []
    try:
        for word in ("one", "two"):
            cid = _out(daemon.moor("run", "-d", "busybox", "sh", "-c", f"echo {word} > /f")).strip()
            daemon.moor("wait", cid)
            ids.append(_out(daemon.moor("commit", cid, "retagged:latest")).strip())
            daemon.moor("rm", cid)
        dangling = _out(daemon.moor("images", "-q", "--no-trunc", "--filter", "dangling=true"))
        assert ids[0] in dangling.split()
        assert _out(daemon.moor("images", "-q", "--no-trunc", "retagged")).split() == [ids[1]]
    finally:
        daemon.moor("rmi", "-f", *ids, check=False)
