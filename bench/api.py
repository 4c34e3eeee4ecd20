"""The Docker Engine API beside dockerd (issue 8): the docker CLI against both daemons.

One run measures both sides (the private daemons of bench/run.py, same busybox image):

1. The docker CLI's `run --rm busybox true`, against the moor daemon and against dockerd,
   N runs interleaved (ABBA): median and p90 wall time. Goal: at most 0.5x.
2. `GET /containers/json` with C running containers: the latency of one request over a
   kept-alive unix-socket connection (API 1.41: Debian's dockerd 20.10 speaks no newer), R requests
   per side interleaved, after a warm-up: median and p90. Goal: at most dockerd's.

Never asserts on time. Everything it starts is removed at the end, on failure too.

    .venv/bin/python bench/api.py [--runs 20] [--containers 100] [--requests 300] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (bench/run.py: the two private daemons and their CLIs)
from run import BenchError, DockerSide, MoorSide, Side, log  # noqa: E402


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(self.unix_path)
        self.sock = sock


def socket_path(side: Side) -> str:
    daemon = side.daemon if isinstance(side, MoorSide | DockerSide) else None
    if daemon is None:
        raise BenchError(f"{side.name}: the daemon is not running")
    return str(daemon.socket)


def start_containers(side: Side, count: int) -> None:
    """``count`` running ``sleep`` containers, started a few at a time."""
    argv = ("run", "-d", *side.no_network, run.IMAGE, "sleep", "100000")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: side.cli(*argv), range(count)))
    running = len(side.running())
    if running != count:
        raise BenchError(f"{side.name}: {running} of {count} containers running")


def bench_list(sides: list[Side], requests: int, count: int) -> dict[str, dict[str, Any]]:
    conns = {s.name: UnixHTTPConnection(socket_path(s)) for s in sides}
    times: dict[str, list[float]] = {s.name: [] for s in sides}

    def get(name: str) -> float:
        conn = conns[name]
        start = time.perf_counter()
        conn.request("GET", "/v1.41/containers/json")
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200 or len(json.loads(body)) != count:
            raise BenchError(f"{name}: GET /containers/json: {response.status} {body[:200]!r}")
        return elapsed

    try:
        for side in sides:  # warm-up: connections, caches
            for _ in range(20):
                get(side.name)
        for i in range(requests):
            for side in run.abba(sides, i):
                times[side.name].append(get(side.name))
    finally:
        for conn in conns.values():
            conn.close()
    return {
        name: {"median_ms": statistics.median(v) * 1000, "p90_ms": run.p90(v) * 1000}
        for name, v in times.items()
    }


def ratio(results: dict[str, Any], key: str, field: str) -> float | None:
    try:
        return float(results["moor"][key][field] / results["docker"][key][field])
    except (KeyError, ZeroDivisionError):
        return None


def print_report(results: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    rows = [
        ("docker run --rm true: median (ms)", "run_rm", "median_ms", "<= 0.5x"),
        ("docker run --rm true: p90 (ms)", "run_rm", "p90_ms", ""),
        (
            f"GET /containers/json, {meta['containers']} running: median (ms)",
            "list",
            "median_ms",
            "<= 1x",
        ),
        (f"GET /containers/json, {meta['containers']} running: p90 (ms)", "list", "p90_ms", ""),
    ]
    ratios = {}
    print(
        f"{run.IMAGE}, {os.cpu_count()} CPUs (moor {meta['versions'].get('moor', '-')}, "
        f"docker {meta['versions'].get('docker', '-')}); the docker CLI drives both daemons"
    )
    print(f"    {'measure':52} {'moor':>8} {'docker':>8} {'moor/docker':>12} {'goal':>9}")
    for label, key, field, goal in rows:
        moor = results.get("moor", {}).get(key, {}).get(field)
        docker = results.get("docker", {}).get(key, {}).get(field)
        r = ratio(results, key, field)
        ratios[f"{key}.{field}"] = r
        print(
            f"    {label:52} {moor if moor is None else f'{moor:.2f}':>8} "
            f"{docker if docker is None else f'{docker:.2f}':>8} "
            f"{'' if r is None else f'{r:.2f}x':>12} {goal:>9}"
        )
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="`run --rm` runs per side")
    parser.add_argument("--containers", type=int, default=100, help="containers listed")
    parser.add_argument("--requests", type=int, default=300, help="list requests per side")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    for opt in ("runs", "containers", "requests"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt} must be at least 1")
    if os.geteuid() != 0:
        parser.error("run it as root: both daemons need it")
    if not run.dockerd.available():
        parser.error("dockerd and docker are not installed (apt-get install docker.io)")
    moor, docker = MoorSide("docker"), DockerSide()
    sides: list[Side] = [moor, docker]
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-api-"))
    results: dict[str, dict[str, Any]] = {s.name: {} for s in sides}
    code = 1
    try:
        with run.signals_raise():
            from moorage.cli.bootstrap import busybox_tar

            rootfs = work / "busybox-rootfs.tar"
            with open(rootfs, "wb") as f:
                busybox_tar(f)
            for side in sides:
                side.start(work, rootfs)
            archive = work / "busybox.tar"
            moor.save_image(archive)
            docker.load_image(archive, rootfs)
            for side in sides:
                run.preflight(side)
            meta = {
                "runs": args.runs,
                "containers": args.containers,
                "requests": args.requests,
                "versions": {s.name: s.version() for s in sides},
                "cpus": os.cpu_count(),
            }
            log(f"docker run --rm {run.IMAGE} true: {args.runs} interleaved runs per side")
            for name, data in run.bench_run_rm(sides, args.runs).items():
                results[name]["run_rm"] = data
            for side in sides:
                log(f"{side.name}: starting {args.containers} containers")
                start_containers(side, args.containers)
            log(f"GET /containers/json: {args.requests} interleaved requests per side")
            for name, data in bench_list(sides, args.requests, args.containers).items():
                results[name]["list"] = data
            if args.json:
                ratios = {
                    "run_rm.median_ms": ratio(results, "run_rm", "median_ms"),
                    "list.median_ms": ratio(results, "list", "median_ms"),
                }
                print(json.dumps({"meta": meta, "results": results, "ratios": ratios}, indent=2))
            else:
                print_report(results, meta)
            code = 0
    except BenchError as exc:
        log(f"bench/api.py: {exc}")
    except KeyboardInterrupt:
        log("bench/api.py: interrupted; cleaning up")
        code = 130
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for side in reversed(sides):
                try:
                    side.stop()
                except Exception as exc:  # noqa: BLE001 - clean up the other side anyway
                    log(f"{side.name}: cleanup failed: {exc}")
            shutil.rmtree(work, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
