"""moorage.sys.caps: the capability table, reading sets, and changing them in forked children.

Changing a process's capabilities cannot be undone, so every change happens in a child
made with os.fork; the child reports through a pipe and the parent asserts. Tests that
drop or raise privileges need root and skip without it.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable

import pytest

from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.sys import caps

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to change capability sets and uids"
)


def _run_child(body: Callable[[int], int]) -> tuple[int, bytes]:
    """Run ``body(report_fd)`` in a forked child; return its wait status and report.

    The child always leaves through os._exit (126 and a traceback on the pipe if body
    raised), and the parent always reaps it, killing it first if reading failed.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 125
        try:
            os.close(read_fd)
            code = body(write_fd)
        except BaseException:
            code = 126
            with contextlib.suppress(BaseException):
                os.write(write_fd, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    done = False
    try:
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        done = True
    finally:
        os.close(read_fd)
        if not done:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks)


def _report(status: int, report: bytes) -> str:
    """The child's report, after checking it exited 0."""
    text = report.decode(errors="replace")
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)}: {text}"
    assert os.WEXITSTATUS(status) == 0, text
    return text


def _status_caps(text: str) -> dict[str, int]:
    """The Cap* lines of a /proc/<pid>/status text, as masks."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            found[key] = int(value.strip(), 16)
    return found


def _own_status() -> str:
    with open("/proc/self/status", encoding="ascii") as f:
        return f.read()


# --- names and masks -------------------------------------------------------------------


def test_table_spans_chown_to_checkpoint_restore() -> None:
    assert caps.CAPABILITIES["CAP_CHOWN"] == 0
    assert caps.CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert caps.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(caps.CAPABILITIES.values()) == list(range(41))


def test_cap_number_of_unknown_name_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match='^unknown capability "CAP_FOO"$'):
        caps.cap_number("CAP_FOO")


def test_mask_of_and_names_of_round_trip() -> None:
    mask = caps.mask_of(["CAP_KILL", "CAP_CHOWN", "CAP_BPF"])

    assert mask == 1 << 0 | 1 << 5 | 1 << 39
    assert caps.names_of(mask) == ["CAP_CHOWN", "CAP_KILL", "CAP_BPF"]


def test_last_cap_matches_procfs() -> None:
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
        assert caps.last_cap() == int(f.read())


def test_known_capabilities_stop_at_last_cap() -> None:
    known = caps.known_capabilities()

    assert known[0] == "CAP_CHOWN"
    assert all(caps.cap_number(name) <= caps.last_cap() for name in known)
    assert len(known) == min(caps.last_cap(), 40) + 1


# --- reading ---------------------------------------------------------------------------


def test_capget_of_self_matches_procfs() -> None:
    status = _status_caps(_own_status())

    sets = caps.capget()

    assert sets.effective == status["CapEff"]
    assert sets.permitted == status["CapPrm"]
    assert sets.inheritable == status["CapInh"]


def test_capget_of_parent_process() -> None:
    with open(f"/proc/{os.getppid()}/status", encoding="ascii") as f:
        status = _status_caps(f.read())

    assert caps.capget(os.getppid()).permitted == status["CapPrm"]


def test_capget_of_missing_pid_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match=r"^capget: pid 2147483647: no such process$"):
        caps.capget(2**31 - 1)


def test_bounding_set_matches_procfs() -> None:
    assert caps.bounding_set() == _status_caps(_own_status())["CapBnd"]


def test_capset_rejects_mask_out_of_range() -> None:
    with pytest.raises(InvalidArgument, match="effective mask -1"):
        caps.capset(-1, 0, 0)


# --- changing, in children -------------------------------------------------------------


def test_capset_raising_beyond_permitted_fails() -> None:
    def body(report: int) -> int:
        caps.capset(0, 0, 0)
        try:
            caps.capset(1, 1, 0)
        except FailedPrecondition as exc:
            os.write(report, str(exc).encode())
        return 0

    text = _report(*_run_child(body))

    assert text == "capset: operation not permitted"


@pytest.mark.root
@needs_root
def test_drop_bounding_keeps_only_the_mask() -> None:
    keep = caps.mask_of(["CAP_CHOWN", "CAP_KILL", "CAP_SETPCAP"]) & caps.bounding_set()

    def body(report: int) -> int:
        caps.drop_bounding(keep)
        os.write(report, f"{caps.bounding_set()}\n{_own_status()}".encode())
        return 0

    text = _report(*_run_child(body))

    read_back, _, status = text.partition("\n")
    assert int(read_back) == keep
    assert _status_caps(status)["CapBnd"] == keep


@pytest.mark.root
@needs_root
def test_capset_reduces_effective_and_permitted() -> None:
    reduced = caps.mask_of(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])

    def body(report: int) -> int:
        caps.capset(reduced, reduced, 0)
        sets = caps.capget()
        os.write(report, f"{sets.effective} {sets.permitted}\n{_own_status()}".encode())
        return 0

    text = _report(*_run_child(body))

    read_back, _, status = text.partition("\n")
    assert read_back.split() == [str(reduced), str(reduced)]
    found = _status_caps(status)
    assert (found["CapEff"], found["CapPrm"], found["CapInh"]) == (reduced, reduced, 0)


@pytest.mark.root
@needs_root
def test_apply_capabilities_sets_all_five() -> None:
    small = caps.mask_of(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    bounding = (small | caps.mask_of(["CAP_NET_RAW"])) & caps.bounding_set()

    def body(report: int) -> int:
        caps.apply_capabilities(
            bounding=bounding, effective=small, permitted=small, inheritable=small, ambient=small
        )
        os.write(report, _own_status().encode())
        return 0

    found = _status_caps(_report(*_run_child(body)))

    assert found == {
        "CapInh": small,
        "CapPrm": small,
        "CapEff": small,
        "CapBnd": bounding,
        "CapAmb": small,
    }


@pytest.mark.root
@needs_root
def test_setuid_without_keepcaps_loses_permitted() -> None:
    def body(report: int) -> int:
        os.setgroups([])
        os.setgid(1000)
        os.setuid(1000)
        os.write(report, str(caps.capget().permitted).encode())
        return 0

    assert _report(*_run_child(body)) == "0"


@pytest.mark.root
@needs_root
def test_ambient_cap_survives_setuid_and_execve() -> None:
    bind = caps.mask_of(["CAP_NET_BIND_SERVICE"])

    def body(report: int) -> int:
        caps.set_keepcaps(True)
        os.setgroups([])
        os.setgid(1000)
        os.setuid(1000)
        caps.set_keepcaps(False)
        caps.capset(bind, bind, bind)
        caps.clear_ambient()
        caps.raise_ambient(bind)
        os.dup2(report, 1)
        os.execv("/bin/cat", ["cat", "/proc/self/status"])

    text = _report(*_run_child(body))

    assert any(line.split()[1:2] == ["1000"] for line in text.splitlines() if line[:4] == "Uid:")
    found = _status_caps(text)
    assert found["CapAmb"] == bind
    assert found["CapEff"] == bind
    assert found["CapPrm"] == bind
