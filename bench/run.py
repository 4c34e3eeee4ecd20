"""Containers beside dockerd (issue 4): `run --rm`, 50 parallel starts, memory.

One run measures both sides, through their command lines, as a user would:
Moorage (`moor -H unix://...` against a private `moor daemon` with its own root and
exec root) and Debian's dockerd (a private instance: no iptables, no bridge, its own
data root and exec root, `docker -H unix://...`). Both get the same busybox image
(`moor bootstrap busybox`, then `moor save` | `docker load`; `docker import` of the
same root filesystem when Moorage is skipped).

1. `run --rm busybox true` (a loopback-only network on both sides: see Side.no_network),
   N runs, interleaved (ABBA): median and p90 wall time.
2. P parallel `run -d busybox sleep 1000` (one CLI process each, all
   launched at once): wall time until `ps -q` counts P running, then `rm -f` of them
   all; R rounds, medians.
3. Memory: the daemons' idle RSS (the `moor daemon` process tree; dockerd + containerd),
   and per running container (K `sleep` containers): the PSS of the per-container helper
   processes (Moorage's monitors, whose cmdline has `moorage.engine.monitor`; dockerd's
   `containerd-shim-runc-v2`, of which one may serve several containers: total / K) and
   the daemons' RSS growth / K. Measured first, on daemons that have run one container;
   the daemons' idle RSS is measured again after the timed runs.

The goals (docs/engine.md): 0.5x of docker's time for 1 and 2; for 3, a monitor must
cost less than a shim. Never asserts on time. Everything it starts is removed at the
end, on failure and on Ctrl-C too.

    .venv/bin/python bench/run.py [--runs 20] [--parallel 50] [--rounds 3]
                                  [--containers 10] [--skip-docker] [--skip-moor] [--json]
                                  [--moor-cli moor|docker]

`--moor-cli docker` drives the moor daemon with the docker CLI (setup still uses `moor`):
the difference with the default is the moor CLI's own cost. The table also shows each
CLI's start-up alone (`--version`), the floor under every command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import dockerd  # noqa: E402
from daemon import Daemon  # noqa: E402
from dockerd import DockerDaemon  # noqa: E402

IMAGE = "busybox"
# The same container on both sides: a network namespace with loopback only, made the
# cheapest way each engine has. The private dockerd has no bridge (it must not touch the
# host's iptables), so its default gives exactly that, with no network sandbox; an
# explicit `--network none` would make dockerd set up a libnetwork sandbox (185 vs
# 110 ms here). Moorage's default is its bridge (a veth), so it says `--network none`.
# bench/net.py measures the networks themselves.
CLI_TIMEOUT = 120.0
MONITOR_MARK = "moorage.engine.monitor"
SHIM_NAME = "containerd-shim-runc-v2"


class BenchError(Exception):
    """A failure the bench explains in one message (then cleans up and exits 1)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command line), for every process now."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone meanwhile
        table[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


def subtree(
    root: int, table: dict[int, tuple[int, str]], exclude: set[int] | None = None
) -> set[int]:
    """``root`` and its descendants, without the subtrees of the ``exclude`` pids."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    out: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in out or pid not in table or (exclude and pid in exclude):
            continue
        out.add(pid)
        stack.extend(children[pid])
    return out


def memory_kb(pid: int) -> dict[str, int]:
    """``Rss`` and ``Pss`` of a process, in kB (zeros if it is gone)."""
    out = {"Rss": 0, "Pss": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in out:
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def kill_trees(pids: set[int], table: dict[int, tuple[int, str]]) -> None:
    """SIGKILL these processes and their descendants (the deepest first)."""
    doomed: list[int] = []
    for pid in pids:
        doomed.extend(sorted(subtree(pid, table) - {pid}, reverse=True))
        doomed.append(pid)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the sides


class Side:
    # `run` flags that give the container a loopback-only network namespace (see above).
    no_network: tuple[str, ...] = ()
    """One engine under test: its daemon, its CLI and its processes."""

    name = ""

    def argv(self, *args: str) -> list[str]:
        raise NotImplementedError

    def start(self, work: Path, rootfs_tar: Path) -> None:
        raise NotImplementedError

    def daemon_pid(self) -> int:
        raise NotImplementedError

    def helpers(self, table: dict[int, tuple[int, str]]) -> set[int]:
        """The per-container helper processes of this daemon (monitors, shims)."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def version_argv(self) -> list[str]:
        """The CLI asked only its version: what it costs to start, without the daemon."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def cli(
        self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"{self.name} {' '.join(args)}: no answer within {timeout:.0f}s ({' '.join(argv)})"
            ) from None
        if check and result.returncode != 0:
            raise BenchError(
                f"{self.name} {' '.join(args)}: exit {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-1500:]}"
            )
        return result

    def core(self, table: dict[int, tuple[int, str]], exclude: set[int] | None = None) -> set[int]:
        """The daemon's own processes: its tree, without the helpers' subtrees (nor those
        of ``exclude``: the containers' processes, wherever the engine puts them)."""
        return subtree(self.daemon_pid(), table, self.helpers(table) | (exclude or set()))

    def container_pids(self, ids: list[str]) -> set[int]:
        """The init pids of these containers (``State.Pid``), those that are running."""
        out = self.cli("inspect", "--format", "{{.State.Pid}}", *ids).stdout.split()
        return {int(pid) for pid in out if pid.isdigit() and int(pid) > 0}

    def running(self) -> list[str]:
        return self.cli("ps", "-q").stdout.split()

    def remove_all(self) -> None:
        """``rm -f`` every container of this (private) daemon."""
        ids = self.cli("ps", "-aq", timeout=60).stdout.split()
        for i in range(0, len(ids), 25):
            self.cli("rm", "-f", *ids[i : i + 25], check=False, timeout=300)


class MoorDaemon(Daemon):
    """tests/daemon.py's private daemon, in a session of its own (a Ctrl-C on the bench
    must not reach it before its containers are removed) and not logging at debug."""

    log_level = "info"
    new_session = True

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.cgroup_parent = f"/moorage-bench/{self.exec_root.name}"

    def failed(self, message: str) -> Exception:
        return BenchError(f"moor {message}")


class PrivateDockerDaemon(DockerDaemon):
    """tests/dockerd.py's private dockerd, in a session of its own (see MoorDaemon)."""

    new_session = True

    def failed(self, message: str) -> Exception:
        return BenchError(message)

    def stop_daemon_only(self) -> None:
        """SIGTERM dockerd and wait, leaving its directories for ``stop`` to remove."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class MoorSide(Side):
    no_network = ("--network", "none")
    name = "moor"

    def __init__(self, client: str = "moor") -> None:
        self.daemon: MoorDaemon | None = None
        moor = Path(sys.executable).parent / "moor"
        self.moor = [str(moor)] if moor.exists() else [sys.executable, "-m", "moorage.cli.main"]
        # The measured commands: `moor`, or the docker CLI against the moor daemon (which
        # tells the daemon's cost from the moor CLI's start-up).
        self.prefix = ["docker"] if client == "docker" else self.moor

    def argv(self, *args: str) -> list[str]:
        assert self.daemon is not None
        return [*self.prefix, "-H", self.daemon.host, *args]

    def moor_cli(self, *args: str) -> None:
        """A setup command through `moor` itself (bootstrap, save), whatever is measured."""
        assert self.daemon is not None
        argv = [*self.moor, "-H", self.daemon.host, *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            raise BenchError(f"moor {' '.join(args)}: exit {result.returncode}: {result.stderr}")

    def start(self, work: Path, rootfs_tar: Path) -> None:
        # Measure the package as installed, with bytecode (as bench/runtime_start.py).
        import compileall

        import moorage

        compileall.compile_dir(str(Path(moorage.__file__).parent), quiet=1)
        self.daemon = MoorDaemon(work / "moor")
        self.daemon.base.mkdir()
        log(f"moor: starting a private daemon (root {self.daemon.root})")
        self.daemon.start()
        self.moor_cli("bootstrap", IMAGE)
        self.moor_cli("image", "inspect", IMAGE)

    def daemon_pid(self) -> int:
        if self.daemon is None or self.daemon.proc is None:
            raise BenchError(f"{self.name}: the daemon is not running")
        return self.daemon.proc.pid

    def helpers(self, table: dict[int, tuple[int, str]]) -> set[int]:
        if self.daemon is None:
            return set()
        ours = (str(self.daemon.root), str(self.daemon.exec_root))
        tree = subtree(self.daemon_pid(), table) if self.daemon.proc is not None else set()
        return {
            pid
            for pid, (_, cmd) in table.items()
            if MONITOR_MARK in cmd and (pid in tree or any(path in cmd for path in ours))
        }

    def version(self) -> str:
        from moorage import __version__

        return __version__

    def version_argv(self) -> list[str]:
        return [*self.prefix, "--version"]

    def save_image(self, path: Path) -> None:
        self.moor_cli("save", "-o", str(path), IMAGE)

    def stop(self) -> None:
        if self.daemon is None:
            return
        leftovers: set[int] = set()
        if self.daemon.proc is not None and self.daemon.proc.poll() is None:
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                self.remove_all()
            leftovers = self.helpers(process_table())
        try:
            self.daemon.stop()
        except subprocess.TimeoutExpired:
            log("moor: the daemon did not stop on SIGTERM; killing it")
            self.daemon.kill()
        # Monitors outlive their daemon by design: kill what rm -f did not end.
        table = process_table()
        alive = {pid for pid in leftovers if pid in table and MONITOR_MARK in table[pid][1]}
        alive |= self.helpers(table)
        if alive:
            log(f"moor: killing {len(alive)} monitor(s) left behind")
            kill_trees(alive, table)
        self.daemon.cleanup()
        self.daemon = None


class DockerSide(Side):
    name = "docker"

    def __init__(self) -> None:
        self.daemon: PrivateDockerDaemon | None = None

    def argv(self, *args: str) -> list[str]:
        assert self.daemon is not None
        return ["docker", "-H", f"unix://{self.daemon.socket}", *args]

    def start(self, work: Path, rootfs_tar: Path) -> None:
        self.daemon = PrivateDockerDaemon(work / "dockerd")
        log(f"docker: starting a private dockerd (data root {self.daemon.base / 'data'})")
        self.daemon.start()

    def load_image(self, archive: Path | None, rootfs_tar: Path) -> None:
        if archive is not None:
            self.cli("load", "-i", str(archive))
        else:
            self.cli("import", "-c", 'CMD ["sh"]', str(rootfs_tar), f"{IMAGE}:latest")
        self.cli("image", "inspect", IMAGE)

    def daemon_pid(self) -> int:
        if self.daemon is None or self.daemon.proc is None:
            raise BenchError(f"{self.name}: the daemon is not running")
        return self.daemon.proc.pid

    def helpers(self, table: dict[int, tuple[int, str]]) -> set[int]:
        if self.daemon is None:
            return set()
        ours = str(self.daemon.exec_root)
        return {
            pid
            for pid, (_, cmd) in table.items()
            if os.path.basename(cmd.split(" ", 1)[0]) == SHIM_NAME and ours in cmd
        }

    def version(self) -> str:
        return self.cli("version", "--format", "{{.Server.Version}}").stdout.strip()

    def version_argv(self) -> list[str]:
        return ["docker", "--version"]

    def stop(self) -> None:
        if self.daemon is None:
            return
        if self.daemon.proc is not None and self.daemon.proc.poll() is None:
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                self.remove_all()
        self.daemon.stop_daemon_only()
        table = process_table()
        alive = self.helpers(table)
        if alive:
            log(f"docker: killing {len(alive)} shim(s) left behind")
            kill_trees(alive, table)
        self.daemon.stop()
        self.daemon = None


# --------------------------------------------------------------------------- measures


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def abba(sides: list[Side], i: int) -> list[Side]:
    """Alternate the order per iteration, so neither side always goes first."""
    return sides if i % 2 == 0 else sides[::-1]


def preflight(side: Side) -> None:
    """One `run --rm` (a warm-up, not counted), with a clear message if it cannot."""
    args = ("run", "--rm", *side.no_network, IMAGE, "true")
    result = side.cli(*args, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-1500:]
        raise BenchError(
            f"{side.name} cannot run a container: `{' '.join(side.argv(*args))}` exited "
            f"{result.returncode}: {detail}"
            + ("\n(use --skip-moor to measure dockerd alone)" if side.name == "moor" else "")
        )


def bench_run_rm(sides: list[Side], runs: int) -> dict[str, dict[str, Any]]:
    times: dict[str, list[float]] = {s.name: [] for s in sides}
    for i in range(runs):
        for side in abba(sides, i):
            start = time.perf_counter()
            side.cli("run", "--rm", *side.no_network, IMAGE, "true")
            times[side.name].append(time.perf_counter() - start)
    return {
        name: {
            "median_ms": statistics.median(v) * 1000,
            "p90_ms": p90(v) * 1000,
            "min_ms": min(v) * 1000,
            "runs_ms": [round(x * 1000, 2) for x in v],
        }
        for name, v in times.items()
    }


def bench_cli_startup(sides: list[Side], runs: int) -> dict[str, dict[str, Any]]:
    """The floor under every command: the CLI's own start-up, `--version`."""
    times: dict[str, list[float]] = {s.name: [] for s in sides}
    for i in range(runs):
        for side in abba(sides, i):
            start = time.perf_counter()
            subprocess.run(side.version_argv(), capture_output=True, check=True, timeout=60)
            times[side.name].append(time.perf_counter() - start)
    return {name: {"median_ms": statistics.median(v) * 1000} for name, v in times.items()}


def wait_running(side: Side, count: int, start: float, timeout: float = 120.0) -> float:
    """Seconds from ``start`` until ``ps -q`` lists ``count`` running containers."""
    deadline = time.monotonic() + timeout
    while True:
        running = len(side.running())
        if running >= count:
            return time.perf_counter() - start
        if time.monotonic() > deadline:
            raise BenchError(
                f"{side.name}: {running} of {count} containers running after {timeout}s"
            )
        time.sleep(0.02)


def parallel_round(side: Side, count: int) -> tuple[float, float, float]:
    """(all CLIs returned, all running, rm -f of all) in seconds, for ``count`` starts."""
    if side.cli("ps", "-aq").stdout.split():
        side.remove_all()
    argv = side.argv("run", "-d", *side.no_network, IMAGE, "sleep", "1000")
    start = time.perf_counter()
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    ids: list[str] = []
    errors: list[str] = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = f"timed out after {CLI_TIMEOUT:.0f}s {err}"
        if proc.returncode == 0:
            ids.append(out.strip())
        else:
            errors.append(err.strip())
    returned = time.perf_counter() - start
    if errors:
        raise BenchError(
            f"{side.name}: {len(errors)} of {count} parallel `run -d` failed; first: {errors[0]}"
        )
    running = wait_running(side, count, start)
    removed = timed(lambda: side.cli("rm", "-f", *ids, timeout=600))
    left = side.cli("ps", "-aq").stdout.split()
    if left:
        raise BenchError(f"{side.name}: {len(left)} containers left after rm -f")
    return returned, running, removed


def bench_parallel(sides: list[Side], count: int, rounds: int) -> dict[str, dict[str, Any]]:
    results: dict[str, list[tuple[float, float, float]]] = {s.name: [] for s in sides}
    for r in range(rounds):
        for side in abba(sides, r):
            log(f"  round {r + 1}/{rounds}: {side.name}, {count} x run -d ...")
            results[side.name].append(parallel_round(side, count))
    return {
        name: {
            "returned_median_s": statistics.median(x[0] for x in rows),
            "running_median_s": statistics.median(x[1] for x in rows),
            "rm_median_s": statistics.median(x[2] for x in rows),
            "rounds": [{"returned_s": a, "running_s": b, "rm_s": c} for a, b, c in rows],
        }
        for name, rows in results.items()
    }


def core_memory(side: Side, containers: set[int] | None = None) -> dict[str, Any]:
    """RSS of the daemon's own processes, total and per command (kB)."""
    table = process_table()
    per: dict[str, int] = defaultdict(int)
    total = 0
    for pid in side.core(table, containers):
        rss = memory_kb(pid)["Rss"]
        total += rss
        per[os.path.basename(table[pid][1].split(" ", 1)[0]) or str(pid)] += rss
    return {"rss_kb": total, "by_process_kb": dict(per)}


def settle(seconds: float = 1.5) -> None:
    time.sleep(seconds)


def bench_memory(side: Side, count: int) -> dict[str, Any]:
    if side.cli("ps", "-aq").stdout.split():
        side.remove_all()
    settle()
    idle = core_memory(side)
    ids: list[str] = []
    try:
        for _ in range(count):
            run = side.cli("run", "-d", *side.no_network, IMAGE, "sleep", "1000")
            ids.append(run.stdout.strip())
        wait_running(side, count, time.perf_counter())
        settle()
        containers = side.container_pids(ids)
        table = process_table()
        helpers = side.helpers(table)
        if not helpers:
            raise BenchError(
                f"{side.name}: {count} containers run, but no helper process was found "
                f"({MONITOR_MARK if side.name == 'moor' else SHIM_NAME} in a command line)"
            )
        pss = sum(memory_kb(pid)["Pss"] for pid in helpers)
        rss = sum(memory_kb(pid)["Rss"] for pid in helpers)
        loaded = core_memory(side, containers)
    finally:
        if ids:
            side.cli("rm", "-f", *ids, timeout=600)
    growth = loaded["rss_kb"] - idle["rss_kb"]
    return {
        "containers": count,
        "helper_processes": len(helpers),
        "helper_pss_kb": pss,
        "helper_rss_kb": rss,
        "helper_pss_per_container_kb": pss / count,
        "daemon_idle_rss_kb": idle["rss_kb"],
        "daemon_idle_by_process_kb": idle["by_process_kb"],
        "daemon_loaded_rss_kb": loaded["rss_kb"],
        "daemon_growth_per_container_kb": growth / count,
        "per_container_kb": pss / count + growth / count,
    }


# --------------------------------------------------------------------------- report


def _ratio(results: dict[str, Any], path: Callable[[dict[str, Any]], float]) -> float | None:
    if "moor" not in results or "docker" not in results:
        return None
    theirs = path(results["docker"])
    return path(results["moor"]) / theirs if theirs else None


def report(results: dict[str, Any], meta: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any]]:
    def mb(kb: float) -> float:
        return kb / 1024

    rows: list[tuple[str, Callable[[dict[str, Any]], float], str, str]] = [
        ("run --rm true: median (ms)", lambda r: r["run_rm"]["median_ms"], "{:.1f}", "<= 0.5x"),
        ("run --rm true: p90 (ms)", lambda r: r["run_rm"]["p90_ms"], "{:.1f}", ""),
        (
            "CLI start-up, --version (ms)",
            lambda r: r["cli_startup"]["median_ms"],
            "{:.1f}",
            "",
        ),
        (
            f"{meta['parallel']} x run -d: all running (s)",
            lambda r: r["parallel"]["running_median_s"],
            "{:.2f}",
            "<= 0.5x",
        ),
        (
            f"{meta['parallel']} x run -d: CLIs returned (s)",
            lambda r: r["parallel"]["returned_median_s"],
            "{:.2f}",
            "",
        ),
        (f"rm -f of {meta['parallel']} (s)", lambda r: r["parallel"]["rm_median_s"], "{:.2f}", ""),
        (
            "daemon idle RSS (MB)",
            lambda r: mb(r["memory"]["daemon_idle_rss_kb"]),
            "{:.1f}",
            "",
        ),
        (
            "daemon idle RSS after the runs (MB)",
            lambda r: mb(r["idle_after_runs"]["rss_kb"]),
            "{:.1f}",
            "",
        ),
        (
            "helper PSS per container (MB)",
            lambda r: mb(r["memory"]["helper_pss_per_container_kb"]),
            "{:.2f}",
            "<= 1x",
        ),
        (
            "daemon RSS growth per container (MB)",
            lambda r: mb(r["memory"]["daemon_growth_per_container_kb"]),
            "{:.2f}",
            "",
        ),
        (
            "memory per container, total (MB)",
            lambda r: mb(r["memory"]["per_container_kb"]),
            "{:.2f}",
            "",
        ),
    ]
    table = [["measure", "moor", "docker", "moor/docker", "goal"]]
    ratios: dict[str, float | None] = {}
    for label, get, fmt, goal in rows:
        cells = [label]
        for name in ("moor", "docker"):
            cells.append(fmt.format(get(results[name])) if name in results else "-")
        ratio = _ratio(results, get)
        ratios[label] = ratio
        cells.append(f"{ratio:.2f}x" if ratio is not None else "-")
        cells.append(goal)
        table.append(cells)
    return table, ratios


def print_table(table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("   ".join(cells).rstrip())


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP end the bench as Ctrl-C does: through the cleanup."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="`run --rm` runs per side")
    parser.add_argument("--parallel", type=int, default=50, help="containers started at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of parallel starts")
    parser.add_argument("--containers", type=int, default=10, help="containers for memory")
    parser.add_argument("--skip-docker", action="store_true", help="measure Moorage alone")
    parser.add_argument("--skip-moor", action="store_true", help="measure dockerd alone")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--moor-cli",
        choices=["moor", "docker"],
        default="moor",
        help="the CLI that drives the moor daemon (docker: the daemon's cost without moor's)",
    )
    args = parser.parse_args()
    if args.skip_docker and args.skip_moor:
        parser.error("--skip-docker and --skip-moor leave nothing to measure")
    for opt in ("runs", "parallel", "rounds", "containers"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt} must be at least 1")
    if os.geteuid() != 0:
        parser.error("run it as root: both daemons need it")
    if not args.skip_docker and not dockerd.available():
        parser.error(
            "dockerd and docker are not installed (apt-get install docker.io); or use --skip-docker"
        )

    sides: list[Side] = []
    if not args.skip_moor:
        sides.append(MoorSide(args.moor_cli))
    if not args.skip_docker:
        sides.append(DockerSide())
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-run-"))
    results: dict[str, dict[str, Any]] = {s.name: {} for s in sides}
    code = 1
    try:
        with signals_raise():
            from moorage.cli.bootstrap import busybox_tar

            rootfs = work / "busybox-rootfs.tar"
            with open(rootfs, "wb") as f:
                busybox_tar(f)
            for side in sides:
                side.start(work, rootfs)
            moor = next((s for s in sides if isinstance(s, MoorSide)), None)
            docker = next((s for s in sides if isinstance(s, DockerSide)), None)
            if docker is not None:
                archive = None
                if moor is not None:
                    archive = work / "busybox.tar"
                    moor.save_image(archive)
                docker.load_image(archive, rootfs)
            for side in sides:
                preflight(side)
            meta = {
                "runs": args.runs,
                "parallel": args.parallel,
                "rounds": args.rounds,
                "containers": args.containers,
                "image": IMAGE,
                "moor_cli": args.moor_cli,
                "versions": {s.name: s.version() for s in sides},
                "cpus": os.cpu_count(),
            }
            # Memory first, on daemons that have run one container: the churn of the
            # timed runs leaves heaps that shrink back slowly, which would blur the growth.
            log(f"memory: idle daemons, then {args.containers} running containers")
            for side in sides:
                results[side.name]["memory"] = bench_memory(side, args.containers)
            log(f"run --rm {IMAGE} true: {args.runs} interleaved runs per side")
            for name, data in bench_run_rm(sides, args.runs).items():
                results[name]["run_rm"] = data
            for name, data in bench_cli_startup(sides, args.runs).items():
                results[name]["cli_startup"] = data
            log(f"{args.parallel} parallel run -d, {args.rounds} rounds")
            for name, data in bench_parallel(sides, args.parallel, args.rounds).items():
                results[name]["parallel"] = data
            for side in sides:
                settle()
                results[side.name]["idle_after_runs"] = core_memory(side)
            table, ratios = report(results, meta)
            if args.json:
                print(json.dumps({"meta": meta, "results": results, "ratios": ratios}, indent=2))
            else:
                versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
                print(
                    f"{IMAGE}, {os.cpu_count()} CPUs ({versions}); {args.runs} runs, "
                    f"{args.parallel} parallel x {args.rounds} rounds, "
                    f"{args.containers} containers for memory"
                    + (
                        "; moor daemon driven by the docker CLI"
                        if args.moor_cli == "docker"
                        else ""
                    )
                )
                print_table(table)
            code = 0
    except BenchError as exc:
        log(f"bench/run.py: {exc}")
    except KeyboardInterrupt:
        log("bench/run.py: interrupted; cleaning up")
        code = 130
    finally:
        # A second Ctrl-C must not leave daemons or containers behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for side in reversed(sides):
                try:
                    side.stop()
                except Exception as exc:  # noqa: BLE001 - clean up the other side anyway
                    log(f"bench/run.py: cleaning up {side.name}: {exc}")
            shutil.rmtree(work, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
