"""`moor update` and `POST /containers/{id}/update` against a real daemon: new limits
reach a running (or paused) container's cgroup at once, inspect shows them, the next
start uses them; a restart policy change rules the next exit; bad input is refused
with dockerd's messages and changes nothing; each update is an `update` event."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from daemon import Daemon, running_daemon
from moorage.runtime.cgroups.v2 import shares_to_weight
from raw_http import Answer, call

pytestmark = pytest.mark.root

T = TypeVar("T")
MB = 1024 * 1024
CGROUP = Path("/sys/fs/cgroup")
UNIFIED_ONLY = (CGROUP / "cgroup.controllers").exists()  # cgroup v2 alone (no v1)
# A container that runs until something creates /tmp/go in it, then exits with $1; its
# restarts exit at once (the file stays in its filesystem).
UNTIL_GO = 'while [ ! -f /tmp/go ]; do sleep 0.05; done; exit "$1"'


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("update") / "moor", busybox=True) as d:
        yield d


@pytest.fixture
def names(daemon: Daemon) -> Iterator[Callable[[], str]]:
    """Unique container names; every container so named is removed at the end."""
    made: list[str] = []

    def new() -> str:
        made.append(name := f"upd-{uuid.uuid4().hex[:10]}")
        return name

    try:
        yield new
    finally:
        if made:
            daemon.moor("rm", "-f", *made, check=False)


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def inspect(daemon: Daemon, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(daemon.moor("inspect", name).stdout)[0]
    return data


def sleeper(daemon: Daemon, name: str, *options: str) -> str:
    """A running container that sleeps; its id."""
    run = daemon.moor("run", "-d", "--name", name, *options, "busybox", "sleep", "600")
    return run.stdout.decode().strip()


def cgroup_dirs(daemon: Daemon, cid: str) -> dict[str, Path]:
    """The container's cgroup directories: per v1 controller, and ``""`` the unified one."""
    relative = Path(daemon.cgroup_parent.lstrip("/")) / cid
    if UNIFIED_ONLY:
        return {"": CGROUP / relative}
    dirs = {c: CGROUP / c / relative for c in ("memory", "cpu", "cpuset", "pids", "freezer")}
    if (CGROUP / "unified").is_dir():
        dirs[""] = CGROUP / "unified" / relative
    return dirs


def setting(daemon: Daemon, cid: str, controller: str, v1_file: str, v2_file: str) -> str:
    dirs = cgroup_dirs(daemon, cid)
    path = dirs[""] / v2_file if UNIFIED_ONLY else dirs[controller] / v1_file
    return path.read_text().strip()


def memory_limits(daemon: Daemon, cid: str) -> tuple[int, int | None]:
    """(memory limit, memory+swap limit); the second None without swap accounting."""
    dirs = cgroup_dirs(daemon, cid)
    if UNIFIED_ONLY:  # v2 limits swap alone
        limit_file, swap_file = dirs[""] / "memory.max", dirs[""] / "memory.swap.max"
    else:
        limit_file = dirs["memory"] / "memory.limit_in_bytes"
        swap_file = dirs["memory"] / "memory.memsw.limit_in_bytes"
    limit = int(limit_file.read_text())
    if not swap_file.exists():
        return limit, None
    swap = int(swap_file.read_text())
    return limit, swap + limit if UNIFIED_ONLY else swap


def cpu_quota_period(daemon: Daemon, cid: str) -> tuple[str, str]:
    if UNIFIED_ONLY:
        quota, period = setting(daemon, cid, "cpu", "", "cpu.max").split()
        return quota, period
    return (
        setting(daemon, cid, "cpu", "cpu.cfs_quota_us", ""),
        setting(daemon, cid, "cpu", "cpu.cfs_period_us", ""),
    )


def pids_max(daemon: Daemon, cid: str) -> str:
    return setting(daemon, cid, "pids", "pids.max", "pids.max")


def api(daemon: Daemon, name: str, body: Any) -> Answer:
    return call(str(daemon.socket), "POST", f"/v1.50/containers/{name}/update", body)


# --- limits ----------------------------------------------------------------------------


def test_a_running_container_gets_new_limits_at_once(
    daemon: Daemon, names: Callable[[], str]
) -> None:
    name = names()
    cid = sleeper(daemon, name)
    dirs = cgroup_dirs(daemon, cid)
    assert all(d.is_dir() for d in dirs.values()), dirs

    result = daemon.moor(
        "update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5",
        "--pids-limit", "50", name,
    )  # fmt: skip

    assert result.stdout.decode() == f"{name}\n"
    limit, swap = memory_limits(daemon, cid)
    assert limit == 64 * MB
    assert swap in (128 * MB, None)
    assert cpu_quota_period(daemon, cid) == ("50000", "100000")
    assert pids_max(daemon, cid) == "50"
    host = inspect(daemon, name)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (
        64 * MB,
        128 * MB,
        500_000_000,
        50,
    )


def test_limits_can_be_lifted(daemon: Daemon, names: Callable[[], str]) -> None:
    name = names()
    cid = sleeper(daemon, name, "--pids-limit", "20")
    daemon.moor("update", "--cpu-quota", "20000", name)
    limited = (pids_max(daemon, cid), cpu_quota_period(daemon, cid)[0])

    daemon.moor("update", "--pids-limit", "-1", "--cpu-quota", "-1", name)

    assert limited == ("20", "20000")

    assert pids_max(daemon, cid) == "max"
    assert cpu_quota_period(daemon, cid)[0] in ("-1", "max")
    host = inspect(daemon, name)["HostConfig"]
    assert (host["PidsLimit"], host["CpuQuota"]) == (0, -1)


def test_updated_limits_hold_at_the_next_start(daemon: Daemon, names: Callable[[], str]) -> None:
    name = names()
    cid = sleeper(daemon, name)
    daemon.moor(
        "update", "--cpu-period", "50000", "--cpu-quota", "25000", "--cpuset-cpus", "0",
        "--memory", "48m", "--pids-limit", "40", name,
    )  # fmt: skip
    pid_before = inspect(daemon, name)["State"]["Pid"]

    daemon.moor("restart", "-t", "0", name)

    assert inspect(daemon, name)["State"]["Pid"] != pid_before  # a new process
    assert cpu_quota_period(daemon, cid) == ("25000", "50000")
    assert setting(daemon, cid, "cpuset", "cpuset.cpus", "cpuset.cpus") == "0"
    assert memory_limits(daemon, cid)[0] == 48 * MB
    assert pids_max(daemon, cid) == "40"


def test_a_stopped_container_starts_with_its_updated_limits(
    daemon: Daemon, names: Callable[[], str]
) -> None:
    name = names()
    cid = daemon.moor("create", "--name", name, "busybox", "sleep", "600").stdout.decode().strip()

    daemon.moor("update", "--memory", "32m", "--pids-limit", "20", "--cpu-shares", "512", name)
    host = inspect(daemon, name)["HostConfig"]
    daemon.moor("start", name)

    assert (host["Memory"], host["PidsLimit"], host["CpuShares"]) == (32 * MB, 20, 512)
    assert memory_limits(daemon, cid)[0] == 32 * MB
    assert pids_max(daemon, cid) == "20"
    shares = setting(daemon, cid, "cpu", "cpu.shares", "cpu.weight")
    assert shares == str(shares_to_weight(512) if UNIFIED_ONLY else 512)


def test_a_paused_container_gets_new_limits(daemon: Daemon, names: Callable[[], str]) -> None:
    name = names()
    cid = sleeper(daemon, name)
    daemon.moor("pause", name)
    try:
        daemon.moor("update", "--pids-limit", "30", name)
        state = inspect(daemon, name)["State"]
    finally:
        daemon.moor("unpause", name)

    assert state["Paused"] is True
    assert pids_max(daemon, cid) == "30"


def test_several_containers_at_once(daemon: Daemon, names: Callable[[], str]) -> None:
    first, second = names(), names()
    ids = [sleeper(daemon, first), sleeper(daemon, second)]

    result = daemon.moor("update", "--pids-limit", "25", first, second)

    assert result.stdout.decode() == f"{first}\n{second}\n"
    assert [pids_max(daemon, cid) for cid in ids] == ["25", "25"]


def test_an_update_is_an_event(daemon: Daemon, names: Callable[[], str]) -> None:
    name = names()
    sleeper(daemon, name)
    since = f"{time.time() - 1:.3f}"

    daemon.moor("update", "--cpu-shares", "256", name)

    events = daemon.moor(
        "events", "--since", since, "--until", f"{time.time():.3f}",
        "--filter", f"container={name}", "--filter", "event=update",
        "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ).stdout.decode()  # fmt: skip
    assert events == f"container update {name}\n"


# --- restart policy --------------------------------------------------------------------


def test_a_new_restart_policy_rules_the_next_exit(daemon: Daemon, names: Callable[[], str]) -> None:
    name = names()
    daemon.moor("run", "-d", "--name", name, "busybox", "sh", "-c", UNTIL_GO, "sh", "3")

    daemon.moor("update", "--restart", "on-failure:2", name)
    daemon.moor("exec", name, "touch", "/tmp/go")

    def given_up() -> dict[str, Any] | None:
        data = inspect(daemon, name)
        done = data["State"]["Status"] == "exited" and data["RestartCount"] == 2
        return data if done else None

    data = wait_for(given_up, "two restarts, then the end")
    assert data["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert data["State"]["ExitCode"] == 3


def test_policy_no_calls_off_a_pending_restart(daemon: Daemon, names: Callable[[], str]) -> None:
    name = names()
    daemon.moor("run", "-d", "--name", name, "--restart", "always", "busybox", "sh", "-c", "exit 3")
    wait_for(lambda: inspect(daemon, name)["State"]["Status"] == "restarting", "a pending restart")

    daemon.moor("update", "--restart", "no", name)
    right_after = inspect(daemon, name)["State"]["Status"]

    # Whether the update found the restart pending or the container just restarted, no
    # restart is pending any more.
    assert right_after != "restarting"
    wait_for(lambda: inspect(daemon, name)["State"]["Status"] == "exited", "the container exited")
    assert inspect(daemon, name)["HostConfig"]["RestartPolicy"]["Name"] == "no"


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"Memory": "64m"},
            400,
            "invalid JSON: json: cannot unmarshal string into Go struct field "
            "UpdateConfig.Memory of type int64",
        ),
        ({"Memory": -1}, 400, "Minimum memory limit allowed is 6MB"),
        ({"Memory": 4 * MB}, 400, "Minimum memory limit allowed is 6MB"),
        (
            {"Memory": 64 * MB, "MemorySwap": 32 * MB},
            400,
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        (
            {"RestartPolicy": {"Name": "sometimes"}},
            400,
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'",
        ),
        (  # the container has 32m with the default swap, twice that
            {"Memory": 96 * MB},
            409,
            "Memory limit should be smaller than already set memoryswap limit, update the "
            "memoryswap at the same time",
        ),
        (
            {"NanoCpus": 10**9},
            409,
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set",
        ),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(
    daemon: Daemon, names: Callable[[], str], body: dict[str, Any], status: int, message: str
) -> None:
    name = names()
    cid = sleeper(daemon, name, "--memory", "32m")
    daemon.moor("update", "--cpu-quota", "50000", name)
    before = inspect(daemon, name)["HostConfig"]

    answer = api(daemon, name, body)

    assert answer.status == status, answer.body
    expected = message if status == 400 else f"Cannot update container {cid}: {message}"
    assert answer.message() == expected
    assert inspect(daemon, name)["HostConfig"] == before
    assert memory_limits(daemon, cid)[0] == 32 * MB


def test_an_auto_remove_container_gets_no_restart_policy(
    daemon: Daemon, names: Callable[[], str]
) -> None:
    name = names()
    cid = sleeper(daemon, name, "--rm")

    refused = daemon.moor("update", "--restart", "always", name, check=False)

    assert refused.returncode == 1
    assert refused.stderr.decode() == (
        f"Error response from daemon: Cannot update container {cid}: Restart policy cannot "
        "be updated because AutoRemove is enabled for the container\n"
    )
    assert inspect(daemon, name)["HostConfig"]["RestartPolicy"]["Name"] == "no"


def test_the_cli_wants_a_flag_and_names_missing_containers(daemon: Daemon) -> None:
    no_flags = daemon.moor("update", "whatever", check=False)
    missing = daemon.moor("update", "--pids-limit", "5", "upd-missing", check=False)

    assert (no_flags.returncode, no_flags.stderr) == (
        1,
        b"you must provide one or more flags when using this command\n",
    )
    assert missing.returncode == 1
    assert missing.stderr == b"Error response from daemon: No such container: upd-missing\n"
