"""``moor registry serve`` beside the CNCF distribution registry (Debian's docker-registry),
on 127.0.0.1, in one run.

- skopeo pushes an image from an OCI layout into each server and pulls it back out
  into another layout: a 50 MB and a 500 MB image of random (incompressible),
  uncompressed layers. Each run starts a fresh server on fresh storage, so every push
  uploads every byte (skopeo's blob cache knows nothing of a new host:port).
- Manifest GETs per second by tag, from 10 concurrent keep-alive connections of a small
  raw-socket client running in a process of its own.

Runs are interleaved between the servers; the table gives medians and the ratio
Moorage / distribution (for times, below 1 means Moorage is faster; for the request
rate, above 1 means it serves more). Never asserts on time.

    .venv/bin/python bench/registry.py [--runs 3] [--sizes 50,500] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from registry_servers import (  # noqa: E402
    Layout,
    Registry,
    distribution_available,
    skopeo,
    start_distribution,
    start_moorage,
    tar_of,
    write_oci_layout,
)

MB = 1_000_000
SERVERS: dict[str, Callable[[Path], Registry]] = {
    "moorage": lambda base: start_moorage(base),
    "distribution": lambda base: start_distribution(base),
}


# --------------------------------------------------------------------------- images


def random_layer(path: Path, size: int) -> Path:
    """A tar holding one file of ``size`` random bytes, written in pieces."""

    class RandomReader:
        def __init__(self, remaining: int) -> None:
            self.remaining = remaining

        def read(self, n: int = -1) -> bytes:
            n = self.remaining if n < 0 else min(n, self.remaining)
            self.remaining -= n
            return os.urandom(n)

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, RandomReader(size))  # type: ignore[arg-type]
    return path


def make_image(work: Path, total_mb: int) -> Layout:
    layers = 2 if total_mb <= 100 else 5
    files = [
        random_layer(work / f"layer-{total_mb}-{i}.tar", total_mb * MB // layers)
        for i in range(layers)
    ]
    return write_oci_layout(work / f"image-{total_mb}mb", files, tag="1", gzip_layers=False)


# --------------------------------------------------------------------------- load client


async def _worker(host: str, port: int, path: str, deadline: float) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    ).encode()
    done = 0
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected reply: {head[:100]!r}")
            lower = head.lower()
            start = lower.index(b"content-length:") + 15
            await reader.readexactly(int(lower[start : lower.index(b"\r\n", start)]))
            done += 1
    finally:
        writer.close()
    return done


async def _load(host: str, port: int, path: str, seconds: float, connections: int) -> float:
    deadline = time.monotonic() + seconds
    counts = await asyncio.gather(
        *(_worker(host, port, path, deadline) for _ in range(connections))
    )
    return sum(counts) / seconds


def manifest_rate(registry: Registry, path: str, seconds: float, connections: int) -> float:
    host, port = registry.host.rsplit(":", 1)
    result = subprocess.run(
        [sys.executable, __file__, "--load", host, port, path, str(seconds), str(connections)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip())


# --------------------------------------------------------------------------- runs


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def checked(*args: str) -> None:
    result = skopeo(*args, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)}: {result.stderr}")


def peak_rss_mb(registry: Registry) -> float:
    assert registry.proc is not None
    with open(f"/proc/{registry.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def transfer_run(kind: str, layout: Layout, work: Path, results: dict[str, list[float]]) -> float:
    base = work / f"{kind}-server"
    registry = SERVERS[kind](base)
    try:
        target = f"docker://{registry.host}/bench/image:1"
        size = layout.path.name
        results.setdefault(f"{kind} push {size}", []).append(
            timed(lambda: checked("copy", "--dest-tls-verify=false", layout.ref, target))
        )
        out = work / f"{kind}-pulled"
        results.setdefault(f"{kind} pull {size}", []).append(
            timed(lambda: checked("copy", "--src-tls-verify=false", target, f"oci:{out}:1"))
        )
        shutil.rmtree(out)
        return peak_rss_mb(registry)
    finally:
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)


def rate_runs(
    kinds: list[str], work: Path, runs: int, seconds: float, connections: int
) -> dict[str, list[float]]:
    small = write_oci_layout(work / "small", [tar_of({"hello": b"world"})], tag="1")
    rates: dict[str, list[float]] = {}
    servers = {kind: SERVERS[kind](work / f"{kind}-rate") for kind in kinds}
    try:
        for registry in servers.values():
            checked(
                "copy",
                "--dest-tls-verify=false",
                small.ref,
                f"docker://{registry.host}/bench/small:1",
            )
        for _ in range(runs):
            for kind, registry in servers.items():
                rate = manifest_rate(registry, "/v2/bench/small/manifests/1", seconds, connections)
                rates.setdefault(kind, []).append(rate)
    finally:
        for registry in servers.values():
            registry.stop()
    return rates


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="50,500", help="image sizes in MB")
    parser.add_argument("--seconds", type=float, default=5.0, help="per manifest-GET run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--load", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        host, port, path, seconds, connections = args.load
        print(asyncio.run(_load(host, int(port), path, float(seconds), int(connections))))
        return 0
    if shutil.which("skopeo") is None:
        print("skopeo is not installed", file=sys.stderr)
        return 1
    kinds = ["moorage"] + (["distribution"] if distribution_available() else [])
    if len(kinds) == 1:
        print("docker-registry is not installed: Moorage alone", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-registry-", dir="/var/tmp"))
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        times: dict[str, list[float]] = {}
        rss: dict[str, float] = {}
        for total_mb in sizes:
            layout = make_image(work, total_mb)
            for _ in range(args.runs):
                for kind in kinds:
                    peak = transfer_run(kind, layout, work, times)
                    rss[kind] = max(rss.get(kind, 0.0), peak)
            shutil.rmtree(layout.path)
        rates = rate_runs(kinds, work, args.runs, args.seconds, args.connections)
        report(kinds, sizes, times, rates, rss, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _row(label: str, cells: list[str], ratio: str) -> str:
    return f"{label:<32}" + "".join(f"{c:>20}" for c in cells) + f"{ratio:>9}"


def report(
    kinds: list[str],
    sizes: list[int],
    times: dict[str, list[float]],
    rates: dict[str, list[float]],
    rss: dict[str, float],
    args: argparse.Namespace,
) -> None:
    print(f"\nmedians of {args.runs} runs; skopeo {skopeo('--version').stdout.split()[-1]}")
    print(_row("operation", kinds, "ratio"))
    for total_mb in sizes:
        for verb in ("push", "pull"):
            row = [statistics.median(times[f"{k} {verb} image-{total_mb}mb"]) for k in kinds]
            cells = [f"{t:.2f} s ({total_mb / t:.0f} MB/s)" for t in row]
            ratio = f"{row[0] / row[1]:.2f}x" if len(row) == 2 else ""
            print(_row(f"skopeo {verb} {total_mb} MB", cells, ratio))
    row = [statistics.median(rates[k]) for k in kinds]
    ratio = f"{row[0] / row[1]:.2f}x" if len(row) == 2 else ""
    print(_row(f"manifest GET/s, {args.connections} conns", [f"{r:.0f}" for r in row], ratio))
    peaks = [f"{rss.get(k, float('nan')):.0f} MB" for k in kinds]
    print(_row("server peak RSS in transfers", peaks, ""))


if __name__ == "__main__":
    sys.exit(main())
