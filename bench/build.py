"""Image builds beside docker build (issue 6): cold, no-change and one-file rebuilds.

One run measures three builders through their command lines, as a user would:
`moor build` against a private `moor daemon` (bench/run.py's MoorDaemon), and a
private dockerd (bench/run.py's PrivateDockerDaemon: no iptables, no bridge) driven by
Debian's docker CLI 20.10 (/usr/bin/docker) with its classic builder
(`DOCKER_BUILDKIT=0`) and with the daemon's built-in BuildKit (`DOCKER_BUILDKIT=1`):
one CLI for both, so that they differ only by builder (the docker CLI 28 in
/usr/local/bin has no buildx, without which it cannot drive BuildKit). Both daemons get
the same busybox image (`moor bootstrap busybox`, then `moor save` | `docker load`).

The context is generated under a temporary directory from a seeded RNG: FILES files
(2,000) of random bytes totalling SIZE_MB (8 MB) in 40 directories, half under deps/ and
half under app/, and a 3-stage Dockerfile (see DOCKERFILE): stage `deps` copies deps/
and checksums it in a RUN, stage `build` copies app/ and checksums it in a RUN, and the
final stage copies one result from each (`COPY --from`). The RUN steps need no network,
and every build says `--network none` (all three builders), so that no builder sets up
a network for them: the private dockerd has no bridge to give them anyway.

Each round runs, per builder (the builders' order rotates from round to round):

1. cold: the builder's cache emptied and the image removed (moor: `rmi -f` then
   `builder prune -af`; classic: `rmi -f` then `image prune -f` until `images -aq`
   lists only busybox, since the classic builder's cache is its intermediate images;
   BuildKit: `rmi -f` then `builder prune -af`, and `system df` must show no build
   cache), then a build;
2. no-change: the same build again;
3. one-file-changed: one file under app/ (which only stage `build` copies) rewritten
   with new contents (unique per round and builder), then the build again.

Wall time of each build command, after a sync (so that no build pays for the
writeback or discards of what ran before it); medians over ROUNDS rounds. Each build's output is
checked for the steps it took from the cache (moor and classic: "Using cache",
BuildKit: "CACHED"): none on a cold build, all six on a no-change rebuild, and on a
one-file rebuild stage `deps`'s COPY and RUN must be cached (BuildKit's CACHED base
image is not counted). After its last build, each builder's image must hold in
/result/app.sum the checksum of app/ as computed here. A builder that misses is
reported in a note under the table (and in the JSON), not hidden.

The goal (issue 6): each scenario at most BuildKit's time. Never asserts on time.
Everything it starts is removed at the end, on failure and on Ctrl-C too.

    .venv/bin/python bench/build.py [--rounds 3] [--files 2000] [--size-mb 8]
                                    [--skip-docker] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402
    IMAGE,
    BenchError,
    DockerSide,
    MoorSide,
    Side,
    log,
    print_table,
    signals_raise,
)

import dockerd  # noqa: E402  (bench/run.py put tests/ on the path)

DOCKER_CLI = "/usr/bin/docker"  # Debian's 20.10: classic and BuildKit (see above)
TAG = "moorage-bench-build:latest"
BUILD_TIMEOUT = 600.0
SCENARIOS = ("cold", "no-change", "one-file-changed")
BUILDERS = ("moor", "classic", "buildkit")
DIRECTORIES = 40

DOCKERFILE = """\
FROM busybox AS deps
COPY deps/ /deps/
RUN find /deps -type f | sort | xargs md5sum > /deps.md5 && wc -l < /deps.md5 > /deps.count

FROM busybox AS build
COPY app/ /app/
RUN mkdir /out && cd /app && find . -type f | sort | xargs sha256sum > /out/app.sha256 \\
 && cat /out/app.sha256 | sha256sum > /out/app.sum

FROM busybox
COPY --from=deps /deps.md5 /deps.count /result/
COPY --from=build /out/ /result/
"""
CACHEABLE_STEPS = 6  # the two COPY and two RUN of the stages, and the final two COPY


# --------------------------------------------------------------------------- the context


@dataclass
class Context:
    path: Path
    files: list[Path] = field(default_factory=list)
    total_bytes: int = 0

    @property
    def changed_file(self) -> Path:
        """A file that only stage `build` copies."""
        return next(f for f in self.files if f.relative_to(self.path).parts[0] == "app")


def make_context(path: Path, files: int, size_mb: float, seed: int = 6) -> Context:
    """FILES files of random bytes, SIZE_MB in all, in DIRECTORIES directories."""
    rng = random.Random(seed)
    path.mkdir()
    (path / "Dockerfile").write_text(DOCKERFILE)
    # Sizes: a long tail (a few large files, many small ones), scaled to the total.
    weights = [rng.lognormvariate(0, 1) for _ in range(files)]
    total = int(size_mb * 1024 * 1024)
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[-1] += total - sum(sizes)
    ctx = Context(path)
    for i, size in enumerate(sizes):
        d = i % DIRECTORIES
        top = "deps" if d < DIRECTORIES // 2 else "app"
        directory = path / top / f"d{d:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        file = directory / f"f{i:04d}.bin"
        file.write_bytes(rng.randbytes(max(1, size)))
        ctx.files.append(file)
        ctx.total_bytes += max(1, size)
    return ctx


# --------------------------------------------------------------------------- the builders


CACHE_MARKS = {"moor": "Using cache", "classic": "Using cache", "buildkit": "CACHED"}


class Builder:
    """One builder: how to build, and how to empty its cache."""

    name = ""

    def __init__(self, side: Side) -> None:
        self.side = side

    def build_argv(self, context: Path) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def reset(self) -> None:
        raise NotImplementedError

    def build(self, context: Path) -> tuple[float, str]:
        """(wall seconds, output) of one build of ``context``."""
        argv = self.build_argv(context)
        start = time.perf_counter()
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
                env=self.env(),
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name}: no build within {BUILD_TIMEOUT:.0f}s") from None
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise BenchError(
                f"{self.name}: `{' '.join(argv)}` exited {result.returncode}: "
                f"{(result.stderr + result.stdout).strip()[-2000:]}"
            )
        return elapsed, result.stdout + result.stderr

    def cached_steps(self, output: str) -> list[str]:
        """The steps this build took from the cache (their instructions)."""
        return cached_steps(self.name, output)


def cached_steps(builder: str, output: str) -> list[str]:
    if builder == "buildkit":
        # `#7 [deps 2/3] COPY deps/ /deps/` ... `#7 CACHED`
        names = dict(re.findall(r"^#(\d+) (\[.*)$", output, re.M))
        steps = [names.get(n, f"#{n}") for n in re.findall(r"^#(\d+) CACHED$", output, re.M)]
        return [s for s in steps if "] FROM " not in s]  # the base image, not a step
    # Classic and moor: `Step 3/9 : RUN ...` followed by ` ---> Using cache`.
    out: list[str] = []
    step = ""
    for line in output.splitlines():
        match = re.match(r"^Step \d+/\d+ : (.*)$", line)
        if match:
            step = match.group(1)
        elif "Using cache" in line and step:
            out.append(step)
    return out


class MoorBuilder(Builder):
    name = "moor"

    def build_argv(self, context: Path) -> list[str]:
        return self.side.argv(
            "build", "-t", TAG, "--network", "none", "--progress", "plain", str(context)
        )

    def reset(self) -> None:
        self.side.cli("rmi", "-f", TAG, check=False)
        self.side.cli("builder", "prune", "-af")


class DockerBuilder(Builder):
    buildkit = False

    def docker_argv(self, *args: str) -> list[str]:
        assert isinstance(self.side, DockerSide)
        assert self.side.daemon is not None
        return [DOCKER_CLI, "-H", f"unix://{self.side.daemon.socket}", *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_BUILDKIT": "1" if self.buildkit else "0"}

    def docker(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            self.docker_argv(*args),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=self.env(),
        )
        if check and result.returncode != 0:
            raise BenchError(
                f"{self.name}: docker {' '.join(args)}: exit {result.returncode}: "
                f"{result.stderr.strip()[-1500:]}"
            )
        return result.stdout

    def base_images(self) -> set[str]:
        return set(self.docker("images", "-aq", IMAGE).split())

    def build_argv(self, context: Path) -> list[str]:
        extra = ["--progress", "plain"] if self.buildkit else []
        return self.docker_argv("build", "-t", TAG, "--network", "none", *extra, str(context))

    def reset(self) -> None:
        self.docker("rmi", "-f", TAG, check=False)
        # Both caches go, whichever builder this is: then neither can feed the other.
        self.docker("builder", "prune", "-af")
        base = self.base_images()
        for _ in range(10):
            left = set(self.docker("images", "-aq").split()) - base
            if not left:
                break
            self.docker("image", "prune", "-f")
            self.docker("rmi", "-f", *sorted(left), check=False)
        else:
            raise BenchError(f"{self.name}: images left after pruning: {sorted(left)}")
        df = self.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}}")
        for line in df.splitlines():
            if line.startswith("Build Cache") and line.split()[-1] != "0":
                raise BenchError(f"{self.name}: build cache left after a prune: {line}")


class ClassicBuilder(DockerBuilder):
    name = "classic"


class BuildKitBuilder(DockerBuilder):
    name = "buildkit"
    buildkit = True


# --------------------------------------------------------------------------- measures


def expectations(builder: str, scenario: str, cached: list[str]) -> str | None:
    """What is wrong with this build's use of the cache, if anything."""
    if scenario == "cold" and cached:
        return f"cold build took {len(cached)} step(s) from the cache: {cached}"
    if scenario == "no-change" and len(cached) < CACHEABLE_STEPS:
        return f"no-change rebuild took {len(cached)} of {CACHEABLE_STEPS} steps from the cache"
    if scenario == "one-file-changed":
        deps = [s for s in cached if "deps" in s and ("COPY deps/" in s or "md5sum" in s)]
        if len(deps) < 2:
            return f"one-file rebuild: stage deps not all cached (cached steps: {cached or 'none'})"
    return None


def change_file(ctx: Context, stamp: str) -> None:
    file = ctx.changed_file
    data = bytearray(file.read_bytes())
    data[:64] = stamp.encode().ljust(64, b".")[:64]
    file.write_bytes(bytes(data))


def bench_builds(builders: list[Builder], ctx: Context, rounds: int) -> dict[str, Any]:
    times: dict[str, dict[str, list[float]]] = {
        b.name: {s: [] for s in SCENARIOS} for b in builders
    }
    cached: dict[str, dict[str, list[list[str]]]] = {
        b.name: {s: [] for s in SCENARIOS} for b in builders
    }
    problems: dict[str, list[str]] = {b.name: [] for b in builders}
    for r in range(rounds):
        shift = r % len(builders)
        for builder in builders[shift:] + builders[:shift]:
            builder.reset()
            for scenario in SCENARIOS:
                if scenario == "one-file-changed":
                    change_file(ctx, f"round {r} {builder.name} {time.time_ns()}")
                # What earlier work left for the filesystem (dirty pages, the discards
                # of deleted trees on a `discard` mount) is done before the clock
                # starts, not charged to whichever build comes next.
                os.sync()
                elapsed, output = builder.build(ctx.path)
                steps = builder.cached_steps(output)
                times[builder.name][scenario].append(elapsed)
                cached[builder.name][scenario].append(steps)
                problem = expectations(builder.name, scenario, steps)
                if problem is None and scenario == SCENARIOS[-1] and r == rounds - 1:
                    problem = check_result(builder, ctx)
                if problem:
                    problems[builder.name].append(f"round {r + 1}: {problem}")
                log(
                    f"  round {r + 1}/{rounds}: {builder.name:8} {scenario:16} "
                    f"{elapsed:6.2f}s ({len(steps)} cached)"
                )
    return {
        name: {
            "median_s": {s: statistics.median(v) for s, v in per.items()},
            "runs_s": {s: [round(x, 3) for x in v] for s, v in per.items()},
            "cached_steps": cached[name],
            "problems": problems[name],
        }
        for name, per in times.items()
    }


def expected_sum(ctx: Context) -> str:
    """What stage `build`'s RUN writes to /out/app.sum, computed here."""
    app = ctx.path / "app"
    names = sorted("./" + str(f.relative_to(app)) for f in app.rglob("*") if f.is_file())
    listing = "".join(
        f"{hashlib.sha256((app / name).read_bytes()).hexdigest()}  {name}\n" for name in names
    )
    return f"{hashlib.sha256(listing.encode()).hexdigest()}  -"


def check_result(builder: Builder, ctx: Context) -> str | None:
    """Whether the image just built holds the checksum of the context as it is now."""
    side = builder.side
    got = side.cli("run", "--rm", *side.no_network, TAG, "cat", "/result/app.sum").stdout.strip()
    want = expected_sum(ctx)
    return None if got == want else f"/result/app.sum is {got!r}, not {want!r}"


# --------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> tuple[list[list[str]], dict[str, float | None]]:
    table = [["scenario (s)", "moor", "docker classic", "docker BuildKit", "moor/BuildKit", "goal"]]
    ratios: dict[str, float | None] = {}
    for scenario in SCENARIOS:
        cells = [scenario]
        for name in BUILDERS:
            cells.append(f"{results[name]['median_s'][scenario]:.2f}" if name in results else "-")
        ratio = None
        if "moor" in results and "buildkit" in results:
            theirs = results["buildkit"]["median_s"][scenario]
            ratio = results["moor"]["median_s"][scenario] / theirs if theirs else None
        ratios[scenario] = ratio
        cells.append(f"{ratio:.2f}x" if ratio is not None else "-")
        cells.append("<= 1x")
        table.append(cells)
    return table, ratios


def leftovers(ours: list[Path]) -> list[str]:
    """What of this run is still there: its daemons' exec roots and work directory, and
    processes that name them (other sessions' daemons are not ours to report)."""
    out = [str(p) for p in ours if p.exists()]
    marks = [str(p) for p in ours]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(mark in cmd for mark in marks):
            out.append(f"pid {entry} ({cmd[:80]})")
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three builds")
    parser.add_argument("--files", type=int, default=2000, help="files in the context")
    parser.add_argument("--size-mb", type=float, default=8.0, help="the context's size")
    parser.add_argument("--skip-docker", action="store_true", help="measure Moorage alone")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.rounds < 1 or args.files < 2 * DIRECTORIES or args.size_mb <= 0:
        parser.error(f"--rounds >= 1, --files >= {2 * DIRECTORIES}, --size-mb > 0")
    if os.geteuid() != 0:
        parser.error("run it as root: both daemons need it")
    if not args.skip_docker and not (dockerd.available() and os.access(DOCKER_CLI, os.X_OK)):
        parser.error(f"dockerd and {DOCKER_CLI} are needed (apt-get install docker.io)")

    moor = MoorSide()
    sides: list[Side] = [moor]
    docker: DockerSide | None = None
    if not args.skip_docker:
        docker = DockerSide()
        sides.append(docker)
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-build-"))
    ours = [work]
    code = 1
    try:
        with signals_raise():
            log(f"context: {args.files} files, {args.size_mb:g} MB under {work / 'context'}")
            ctx = make_context(work / "context", args.files, args.size_mb)
            from moorage.cli.bootstrap import busybox_tar

            rootfs = work / "busybox-rootfs.tar"
            with open(rootfs, "wb") as f:
                busybox_tar(f)
            for side in sides:
                side.start(work, rootfs)
            for daemon in (moor.daemon, docker.daemon if docker else None):
                if daemon is not None:
                    ours.append(daemon.exec_root)
            builders: list[Builder] = [MoorBuilder(moor)]
            if docker is not None:
                archive = work / "busybox.tar"
                moor.save_image(archive)
                docker.load_image(archive, rootfs)
                builders += [ClassicBuilder(docker), BuildKitBuilder(docker)]
            meta = {
                "rounds": args.rounds,
                "files": len(ctx.files),
                "bytes": ctx.total_bytes,
                "image": IMAGE,
                "dockerfile": DOCKERFILE,
                "docker_cli": DOCKER_CLI,
                "versions": {s.name: s.version() for s in sides},
                "cpus": os.cpu_count(),
            }
            log(f"builds: {args.rounds} rounds of cold, no-change, one-file-changed")
            results = bench_builds(builders, ctx, args.rounds)
            table, ratios = report(results)
            if args.json:
                print(json.dumps({"meta": meta, "results": results, "ratios": ratios}, indent=2))
            else:
                versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
                print(
                    f"{len(ctx.files)} files, {ctx.total_bytes / 2**20:.1f} MB, 3 stages; "
                    f"{args.rounds} rounds, medians; {os.cpu_count()} CPUs ({versions}; "
                    f"docker CLI {DOCKER_CLI})"
                )
                print_table(table)
                for name, data in results.items():
                    for problem in data["problems"]:
                        print(f"note: {name}: {problem}")
            code = 0
    except BenchError as exc:
        log(f"bench/build.py: {exc}")
    except KeyboardInterrupt:
        log("bench/build.py: interrupted; cleaning up")
        code = 130
    finally:
        # A second Ctrl-C must not leave daemons behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for side in reversed(sides):
                try:
                    side.stop()
                except Exception as exc:  # noqa: BLE001 - clean up the other side anyway
                    log(f"bench/build.py: cleaning up {side.name}: {exc}")
            shutil.rmtree(work, ignore_errors=True)
            left = leftovers(ours)
            if left:
                log(f"bench/build.py: left behind: {', '.join(left)}")
        finally:
            signal.signal(signal.SIGINT, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
