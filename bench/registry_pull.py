"""`moor pull` beside `docker pull` and `skopeo copy`, from one local distribution registry.

A 50 MB image of random (incompressible) gzip layers is pushed once into a private
distribution registry (Debian's docker-registry) on 127.0.0.1; then each round, one
after the other: `moor pull` through a private moor daemon, `docker pull` through a
private dockerd (Debian's docker.io, run as tests/dockerd.py does), and `skopeo copy`
to a fresh OCI layout directory. Each pull starts with the image removed (and its
layers collected), so every round downloads, verifies and, for moor and docker,
unpacks the layers; skopeo only stores the blobs. The pushes are timed as well (moor
and docker push to a new repository each round, skopeo copies from an OCI layout).
Medians and ratios are printed. Never asserts on time.

    .venv/bin/python bench/registry_pull.py [--rounds 5] [--size-mb 50] [--layers 5]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
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

import distribution_registry  # noqa: E402
import dockerd  # noqa: E402
from daemon import Daemon  # noqa: E402
from distribution_registry import DistributionRegistry  # noqa: E402
from dockerd import DockerDaemon  # noqa: E402


class BenchDaemon(Daemon):
    log_level = "info"  # debug logging would be part of what is timed


def make_archive(path: Path, total_mb: int, layers: int, seed: int = 7) -> None:
    """A docker-archive of ``layers`` gzip layers of random bytes, ``total_mb`` in all."""
    rng = random.Random(seed)
    size = total_mb * 1024 * 1024 // layers
    tars = []
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = rng.randbytes(size)
            info = tarfile.TarInfo(f"layer{i}/random.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tars.append(buf.getvalue())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars],
            },
        }
    ).encode()
    with tarfile.open(path, "w") as out:
        names = []
        for i, t in enumerate(tars):
            packed = gzip.compress(t, compresslevel=1, mtime=0)
            info = tarfile.TarInfo(f"layer{i}.tar.gz")
            info.size = len(packed)
            out.addfile(info, io.BytesIO(packed))
            names.append(info.name)
        for name, data in (
            ("config.json", config),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": "config.json", "RepoTags": ["bench/pull:1"], "Layers": names}]
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, env=env, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.decode()[-2000:]}")


def push_rounds(
    moor: Daemon,
    docker: DockerDaemon | None,
    archive: Path,
    layout: Path,
    registry: DistributionRegistry,
    times: dict[str, list[float]],
    have_skopeo: bool,
) -> None:
    moor.moor("load", "-i", str(archive))
    mine = f"{registry.host}/moor/image:1"
    moor.moor("tag", "bench/pull:1", mine)
    times.setdefault("moor push", []).append(timed(lambda: moor.moor("push", mine)))
    moor.moor("rmi", mine)
    moor.moor("rmi", "bench/pull:1")
    if docker is not None:
        docker.docker("load", "-i", str(archive))
        theirs = f"{registry.host}/docker/image:1"
        docker.docker("tag", "bench/pull:1", theirs)
        times.setdefault("docker push", []).append(timed(lambda: docker.docker("push", theirs)))
        docker.docker("rmi", theirs)
        docker.docker("rmi", "bench/pull:1")
    if have_skopeo:
        copied = f"docker://{registry.host}/skopeo/image:1"
        times.setdefault("skopeo copy (push)", []).append(
            timed(
                lambda: run(
                    [
                        "skopeo",
                        "--insecure-policy",
                        "copy",
                        "--dest-tls-verify=false",
                        f"oci:{layout}:pull",
                        copied,
                    ]  # fmt: skip
                )
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--layers", type=int, default=5)
    args = parser.parse_args()
    if not distribution_registry.available():
        print("docker-registry (distribution) is not installed")
        return 1
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-registry-"))
    registry = DistributionRegistry(work / "registry")
    moor = BenchDaemon(work / "moor")
    moor.base.mkdir()
    docker: DockerDaemon | None = None
    have_skopeo = shutil.which("skopeo") is not None
    try:
        archive = work / "image.tar"
        make_archive(archive, args.size_mb, args.layers)
        print(
            f"image: {args.layers} gzip layers of random bytes, "
            f"{archive.stat().st_size / 1e6:.1f} MB; {args.rounds} rounds"
        )
        registry.start()
        moor.start()
        if dockerd.available():
            docker = DockerDaemon(work / "dockerd")
            docker.start()
        moor.moor("load", "-i", str(archive))
        source = f"{registry.host}/bench/pull:1"
        moor.moor("tag", "bench/pull:1", source)
        moor.moor("push", source)
        moor.moor("rmi", "bench/pull:1")
        moor.moor("rmi", source)
        layout = work / "layout"
        if have_skopeo:
            run(["skopeo", "--insecure-policy", "copy", f"docker-archive:{archive}",
                 f"oci:{layout}:pull"])  # fmt: skip

        times: dict[str, list[float]] = {}
        for i in range(args.rounds):
            times.setdefault("moor pull", []).append(timed(lambda: moor.moor("pull", "-q", source)))
            moor.moor("rmi", source)
            if docker is not None:
                dk = docker.docker
                times.setdefault("docker pull", []).append(timed(lambda dk=dk: dk("pull", source)))
                dk("rmi", source)
            if have_skopeo:
                target = work / f"pulled{i}"
                times.setdefault("skopeo copy (no unpack)", []).append(
                    timed(
                        lambda target=target: run(
                            [
                                "skopeo",
                                "--insecure-policy",
                                "copy",
                                "--src-tls-verify=false",
                                f"docker://{source}",
                                f"oci:{target}:pull",
                            ]  # fmt: skip
                        )
                    )
                )
                shutil.rmtree(target)
            # Pushes to an empty registry each round: every blob goes up (no tool can
            # skip a blob or mount it from an earlier round's repository).
            target_registry = DistributionRegistry(work / f"push-registry-{i}")
            target_registry.start()
            try:
                push_rounds(moor, docker, archive, layout, target_registry, times, have_skopeo)
            finally:
                target_registry.stop()
                shutil.rmtree(target_registry.base, ignore_errors=True)

        print(f"{'operation':<28}{'median s':>10}{'min':>8}{'max':>8}")
        medians: dict[str, float] = {}
        for name, values in times.items():
            medians[name] = statistics.median(values)
            print(f"{name:<28}{medians[name]:>10.2f}{min(values):>8.2f}{max(values):>8.2f}")
        for ours, theirs in (
            ("moor pull", "docker pull"),
            ("moor pull", "skopeo copy (no unpack)"),
            ("moor push", "docker push"),
            ("moor push", "skopeo copy (push)"),
        ):
            if ours in medians and theirs in medians:
                print(f"{ours} / {theirs}: {medians[ours] / medians[theirs]:.2f}x")
        if docker is None:
            print("docker: dockerd is not installed; skipped")
        if not have_skopeo:
            print("skopeo: not installed; skipped")
        return 0
    finally:
        if docker is not None:
            docker.stop()
        moor.cleanup()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    sys.exit(main())
