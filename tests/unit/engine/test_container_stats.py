"""engine.container_stats from fake cgroup and /proc trees: Docker's StatsJSON shape and
numbers on cgroup v1 and v2, the sampling rules of stream and one-shot, and ps parsing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from moorage.engine import container_stats as cs
from moorage.errors import FailedPrecondition, InvalidArgument

TICKS = 100
PROC_STAT = """cpu  100 0 50 800 10 0 40 0 0 0
cpu0 50 0 25 400 5 0 20 0 0 0
cpu1 50 0 25 400 5 0 20 0 0 0
intr 12345
ctxt 999
"""
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1500      10    1    2    0     0          0         0      700       7    3    4    0     0       0          0
"""  # noqa: E501
GIB = 1 << 30


def _write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    _write(root, {"stat": PROC_STAT})
    _write(root / "42" / "net", {"dev": NET_DEV})
    return root


def _v1(tmp_path: Path) -> dict[str, str]:
    base = tmp_path / "v1"
    _write(
        base / "cpuacct",
        {
            "cpuacct.usage": "3000000000\n",
            "cpuacct.usage_percpu": "1000000000 2000000000 \n",
            "cpuacct.stat": "user 150\nsystem 50\n",
        },
    )
    _write(base / "cpu", {"cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n"})
    _write(
        base / "memory",
        {
            "memory.usage_in_bytes": "8388608\n",
            "memory.max_usage_in_bytes": "9000000\n",
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.failcnt": "0\n",
            "memory.stat": "cache 4096\nrss 8192\ntotal_inactive_file 1024\n",
        },
    )
    _write(base / "pids", {"pids.current": "3\n", "pids.max": "max\n"})
    _write(
        base / "blkio",
        {
            "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 512\n"
            "8:0 Sync 0\n8:0 Async 4608\n8:0 Total 4608\nTotal 4608\n",
            "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 1\nTotal 2\n",
        },
    )
    return {c: str(base / c) for c in ("cpuacct", "cpu", "memory", "pids", "blkio")}


def _v2(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "v2"
    _write(
        d,
        {
            "cpu.stat": "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n"
            "nr_periods 4\nnr_throttled 1\nthrottled_usec 250\n",
            "memory.current": "16777216\n",
            "memory.max": "268435456\n",
            "memory.stat": "anon 8192\nfile 4096\ninactive_file 1024\nsomething_new 7\n",
            "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
            "pids.current": "2\n",
            "pids.max": "100\n",
            "io.stat": "8:0 rbytes=4096 wbytes=512 rios=1 wios=2 dbytes=0 dios=0\n",
        },
    )
    return {"": str(d)}


def test_v1_sample_in_dockers_shape(tmp_path: Path, proc: Path) -> None:
    s = cs.read_sample(_v1(tmp_path), pid=42, proc=str(proc), clock_ticks=TICKS, now_ns=2 * 10**18)
    out = cs.stats_json(s, None, name="web", container_id="c" * 64, host_memory=4 * GIB)
    assert out["name"] == "/web"
    assert out["id"] == "c" * 64
    assert out["read"] == "2033-05-18T03:33:20Z"
    assert out["preread"] == "0001-01-01T00:00:00Z"
    cpu = out["cpu_stats"]
    assert cpu["cpu_usage"] == {
        "total_usage": 3_000_000_000,
        "percpu_usage": [1_000_000_000, 2_000_000_000],
        "usage_in_kernelmode": 500_000_000,  # 50 ticks at 100 Hz
        "usage_in_usermode": 1_500_000_000,
    }
    assert cpu["system_cpu_usage"] == (100 + 50 + 800 + 10 + 40) * 10**9 // TICKS
    assert cpu["online_cpus"] == 2
    assert cpu["throttling_data"] == {"periods": 10, "throttled_periods": 2, "throttled_time": 5000}
    memory = out["memory_stats"]
    assert memory["usage"] == 8388608
    assert memory["max_usage"] == 9000000
    assert memory["limit"] == 4 * GIB  # no limit: the host's memory
    assert memory["stats"]["total_inactive_file"] == 1024
    assert "failcnt" not in memory
    assert out["pids_stats"] == {"current": 3}
    blkio = out["blkio_stats"]
    assert blkio["io_service_bytes_recursive"][:2] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 512},
    ]
    assert len(blkio["io_serviced_recursive"]) == 2
    assert blkio["io_queue_recursive"] == []
    assert out["networks"] == {
        "eth0": {
            "rx_bytes": 1500,
            "rx_packets": 10,
            "rx_errors": 1,
            "rx_dropped": 2,
            "tx_bytes": 700,
            "tx_packets": 7,
            "tx_errors": 3,
            "tx_dropped": 4,
        }
    }
    assert out["num_procs"] == 0
    assert out["storage_stats"] == {}


def test_v2_sample_in_dockers_shape(tmp_path: Path, proc: Path) -> None:
    s = cs.read_sample(_v2(tmp_path), pid=None, proc=str(proc), clock_ticks=TICKS, now_ns=0)
    out = cs.stats_json(s, None, name="/web", container_id="x", host_memory=4 * GIB)
    assert out["name"] == "/web"
    assert out["cpu_stats"]["cpu_usage"] == {
        "total_usage": 3_000_000_000,
        "usage_in_kernelmode": 1_000_000_000,
        "usage_in_usermode": 2_000_000_000,
    }
    assert out["cpu_stats"]["throttling_data"] == {
        "periods": 4,
        "throttled_periods": 1,
        "throttled_time": 250_000,
    }
    memory = out["memory_stats"]
    assert memory["usage"] == 16777216
    assert memory["limit"] == 268435456
    assert memory["failcnt"] == 1
    assert memory["stats"] == {"anon": 8192, "file": 4096, "inactive_file": 1024}
    assert out["pids_stats"] == {"current": 2, "limit": 100}
    assert out["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096},
        {"major": 8, "minor": 0, "op": "write", "value": 512},
    ]
    assert out["blkio_stats"]["io_queue_recursive"] is None
    assert "networks" not in out


def test_a_limit_above_the_hosts_memory_is_the_hosts_memory(tmp_path: Path, proc: Path) -> None:
    s = cs.read_sample(_v2(tmp_path), proc=str(proc), clock_ticks=TICKS)
    assert cs.stats_json(s, None, name="a", container_id="b", host_memory=GIB // 8)["memory_stats"][
        "limit"
    ] == (GIB // 8)


def test_a_client_can_compute_the_cpu_percentage(tmp_path: Path, proc: Path) -> None:
    """docker stats: (cpu delta / system delta) * online cpus * 100."""
    paths = _v2(tmp_path)
    first = cs.read_sample(paths, proc=str(proc), clock_ticks=TICKS, now_ns=10**18)
    (tmp_path / "v2" / "cpu.stat").write_text("usage_usec 3500000\n")
    (proc / "stat").write_text(PROC_STAT.replace("cpu  100 0 50 800", "cpu  150 0 50 900"))
    second = cs.read_sample(paths, proc=str(proc), clock_ticks=TICKS, now_ns=10**18 + 10**9)
    out = cs.stats_json(second, first, name="a", container_id="b", host_memory=GIB)
    cpu_delta = (
        out["cpu_stats"]["cpu_usage"]["total_usage"]
        - (out["precpu_stats"]["cpu_usage"]["total_usage"])
    )
    system_delta = out["cpu_stats"]["system_cpu_usage"] - out["precpu_stats"]["system_cpu_usage"]
    assert cpu_delta == 500_000_000
    assert system_delta == 150 * 10**9 // TICKS
    assert out["preread"] == "2001-09-09T01:46:40Z"
    assert round(cpu_delta / system_delta * out["cpu_stats"]["online_cpus"] * 100) == 67


def test_zero_stats_are_dockerds_for_a_stopped_container() -> None:
    out = cs.zero_stats("web", "abc")
    assert out == {
        "read": "0001-01-01T00:00:00Z",
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {},
        "blkio_stats": {
            "io_service_bytes_recursive": None,
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {},
        "name": "/web",
        "id": "abc",
    }


class _Samples:
    def __init__(self, count: int) -> None:
        self.left = count
        self.taken = 0

    def __call__(self) -> cs.Sample | None:
        if self.left == 0:
            return None
        self.left -= 1
        self.taken += 1
        return cs.Sample(read_ns=self.taken * 10**9, cpu_total=self.taken * 100)


def test_stream_false_takes_two_samples_one_shot_one() -> None:
    sleeps: list[float] = []
    samples = _Samples(5)
    out = cs.stats_once(samples, name="a", container_id="b", sleep=sleeps.append)
    assert samples.taken == 2
    assert sleeps == [1.0]
    assert out["precpu_stats"]["cpu_usage"]["total_usage"] == 100
    assert out["cpu_stats"]["cpu_usage"]["total_usage"] == 200
    samples = _Samples(5)
    out = cs.stats_once(samples, name="a", container_id="b", one_shot=True, sleep=sleeps.append)
    assert samples.taken == 1
    assert out["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert cs.stats_once(_Samples(0), name="a", container_id="b") == cs.zero_stats("a", "b")


def test_stream_true_runs_until_the_container_stops() -> None:
    sleeps: list[float] = []
    running = iter([True, True, True, False])
    out: list[dict[str, Any]] = list(
        cs.stats_stream(
            _Samples(10),
            name="a",
            container_id="b",
            running=lambda: next(running),
            sleep=sleeps.append,
        )
    )
    assert len(out) == 3
    assert sleeps == [1.0, 1.0, 1.0]
    assert out[0]["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert out[2]["precpu_stats"]["cpu_usage"]["total_usage"] == 200
    assert out[2]["cpu_stats"]["cpu_usage"]["total_usage"] == 300
    # the cgroup disappears: the stream ends
    gone = cs.stats_stream(
        _Samples(1), name="a", container_id="b", running=lambda: True, sleep=lambda _: None
    )
    assert len(list(gone)) == 1


# --- top -----------------------------------------------------------------------------------

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init splash
root         100       1  0 10:01 ?        00:00:00 sleep 1000
user         200     100  0 10:02 pts/0    00:00:00 sh -c echo a  b
"""


def test_ps_output_keeps_the_containers_rows() -> None:
    got = cs.parse_ps_output(PS_EF, [100, 200])
    assert got["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert got["Processes"] == [
        ["root", "100", "1", "0", "10:01", "?", "00:00:00", "sleep 1000"],
        ["user", "200", "100", "0", "10:02", "pts/0", "00:00:00", "sh -c echo a b"],
    ]


def test_thread_rows_follow_their_process() -> None:
    output = "  PID TTY      STAT   TIME COMMAND\n  100 ?        -      0:00 sleep\n    - -        Sl     0:00 -\n  300 ?        -      0:00 other\n    - -        S      0:00 -\n"  # noqa: E501
    got = cs.parse_ps_output(output, [100])
    assert got["Processes"] == [
        ["100", "?", "-", "0:00", "sleep"],
        ["-", "-", "Sl", "0:00", "-"],
    ]


def test_ps_output_without_a_pid_column_is_an_error() -> None:
    with pytest.raises(FailedPrecondition, match="Couldn't find PID field"):
        cs.parse_ps_output("USER COMMAND\nroot sh\n", [1])


def test_ps_args_may_not_rename_a_column_to_pid() -> None:
    with pytest.raises(InvalidArgument, match='specifying "user=PID" is not allowed'):
        cs.top([os.getpid()], "-o pid,comm -o user=PID")


def test_top_runs_the_hosts_ps() -> None:
    got = cs.top([os.getpid()])
    assert "PID" in got["Titles"]
    assert [int(row[got["Titles"].index("PID")]) for row in got["Processes"]] == [os.getpid()]
    custom = cs.top([os.getpid()], "-o pid,comm")
    assert custom["Titles"] == ["PID", "COMMAND"]
    assert custom["Processes"][0][0] == str(os.getpid())


def test_ps_args_that_ps_refuses_give_its_message() -> None:
    with pytest.raises(InvalidArgument):
        cs.top([os.getpid()], "--no-such-option")
    with pytest.raises(FailedPrecondition, match="PID"):
        cs.top([os.getpid()], "-o comm")  # no PID column to filter by
