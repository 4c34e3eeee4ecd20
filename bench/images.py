"""Load, unpack and save a 200 MB image of 3 gzip layers, side by side with the anchors.

Moorage (`moor load` / `moor save` through a private daemon, which unpacks every
layer into snapshots during load) against `skopeo copy` between docker-archive
and an OCI layout (which verifies and rewrites the same blobs, without unpacking),
and `docker load` / `docker save` when a docker daemon answers. Runs are
interleaved; medians and ratios are printed, with the daemon's peak RSS. Never
asserts on time.

    .venv/bin/python bench/images.py [--runs 3] [--size-mb 200]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
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

import dockerd  # noqa: E402
from daemon import Daemon  # noqa: E402
from dockerd import DockerDaemon  # noqa: E402


def _layer(rng: random.Random, size: int, index: int) -> bytes:
    """A layer tar whose content is half random, half repetitive: gzip has real work."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        chunk = 4 * 1024 * 1024
        for i in range(max(1, size // chunk)):
            data = rng.randbytes(chunk // 2) + bytes([i % 251]) * (chunk // 2)
            info = tarfile.TarInfo(f"layer{index}/file{i:04d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_archive(path: Path, total_mb: int) -> None:
    """A docker-archive with three gzip layers (as `docker save` of a pulled image)."""
    rng = random.Random(42)
    layers = [_layer(rng, total_mb * 1024 * 1024 // 3, i) for i in range(3)]
    diff_ids = [f"sha256:{__import__('hashlib').sha256(t).hexdigest()}" for t in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    with tarfile.open(path, "w") as out:
        names = []
        for i, layer in enumerate(layers):
            packed = gzip.compress(layer, compresslevel=6, mtime=0)
            info = tarfile.TarInfo(f"layer{i}.tar.gz")
            info.size = len(packed)
            out.addfile(info, io.BytesIO(packed))
            names.append(info.name)
        info = tarfile.TarInfo("config.json")
        info.size = len(config)
        out.addfile(info, io.BytesIO(config))
        manifest = json.dumps(
            [{"Config": "config.json", "RepoTags": ["bench/big:1"], "Layers": names}]
        ).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        out.addfile(info, io.BytesIO(manifest))


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-images-"))
    daemon = Daemon(work / "moor")
    docker_daemon: DockerDaemon | None = None
    daemon.base.mkdir()
    try:
        archive = work / "big.tar"
        make_archive(archive, args.size_mb)
        print(f"image: {archive.stat().st_size / 1e6:.0f} MB archive, 3 gzip layers")
        daemon.start()
        assert daemon.proc is not None
        times: dict[str, list[float]] = {}
        have_skopeo = shutil.which("skopeo") is not None
        if dockerd.available():
            docker_daemon = DockerDaemon(work / "dockerd")
            docker_daemon.start()
        have_docker = docker_daemon is not None
        for i in range(args.runs):
            out = work / f"saved{i}.tar"
            times.setdefault("moor load (+unpack)", []).append(
                timed(lambda: daemon.moor("load", "-i", str(archive)))
            )
            times.setdefault("moor save", []).append(
                timed(lambda out=out: daemon.moor("save", "-o", str(out), "bench/big:1"))
            )
            daemon.moor("rmi", "bench/big:1")
            out.unlink()
            if have_skopeo:
                layout = work / f"oci{i}"
                times.setdefault("skopeo copy docker-archive -> oci", []).append(
                    timed(
                        lambda layout=layout: run(
                            [
                                "skopeo",
                                "--insecure-policy",
                                "copy",
                                f"docker-archive:{archive}",
                                f"oci:{layout}:big",
                            ]
                        )
                    )
                )
                back = work / f"back{i}.tar"
                times.setdefault("skopeo copy oci -> docker-archive", []).append(
                    timed(
                        lambda layout=layout, back=back: run(
                            [
                                "skopeo",
                                "--insecure-policy",
                                "copy",
                                f"oci:{layout}:big",
                                f"docker-archive:{back}:bench/big:1",
                            ]
                        )
                    )
                )
                shutil.rmtree(layout)
                back.unlink()
            if have_docker:
                assert docker_daemon is not None
                dk = docker_daemon.docker
                times.setdefault("docker load", []).append(
                    timed(lambda dk=dk: dk("load", "-i", str(archive)) and None)
                )
                dout = work / f"docker{i}.tar"
                times.setdefault("docker save", []).append(
                    timed(
                        lambda dout=dout, dk=dk: dk("save", "-o", str(dout), "bench/big:1") and None
                    )
                )
                dk("rmi", "bench/big:1")
                dout.unlink()
        print(f"{'operation':<36}{'median s':>10}{'min':>8}{'max':>8}")
        medians = {}
        for name, values in times.items():
            medians[name] = statistics.median(values)
            print(f"{name:<36}{medians[name]:>10.2f}{min(values):>8.2f}{max(values):>8.2f}")

        def ratio(label: str, ours: str, theirs: str) -> None:
            print(f"{label:<24}{medians[ours] / medians[theirs]:.2f}x")

        if have_skopeo:
            ratio("load / skopeo in:", "moor load (+unpack)", "skopeo copy docker-archive -> oci")
            ratio("save / skopeo out:", "moor save", "skopeo copy oci -> docker-archive")
        if have_docker:
            ratio("load / docker load:", "moor load (+unpack)", "docker load")
            ratio("save / docker save:", "moor save", "docker save")
        else:
            print("docker: dockerd is not installed; skipped")
        print(f"moor daemon peak RSS: {peak_rss_mb(daemon.proc.pid):.0f} MB")
        return 0
    finally:
        if docker_daemon is not None:
            docker_daemon.stop()
        daemon.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    sys.exit(main())
