"""Start-up cost of a container: `run` of a busybox bundle running `true`.

Runs runc, crun (where it works), the `moor-runtime` CLI, and moorage's in-process
API (as the engine calls it, from a warm process) interleaved in one loop, so that
machine noise hits all of them alike, and prints each one's median and its ratio
to runc. Never asserts on time.

    .venv/bin/python bench/runtime_start.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bundles import make_bundle  # noqa: E402
from moorage.runtime import api as runtime  # noqa: E402


def _bundle(work: Path) -> Path:
    def edit(config: dict[str, object]) -> None:
        # crun 1.8 refuses newer spec versions; the bundle uses nothing newer.
        config["ociVersion"] = "1.0.2"

    return make_bundle(work / "bundle", ["true"], edit=edit, cgroups_path="/moorage-bench/x")


def _cli(binary: str, root: Path, bundle: Path) -> Callable[[str], None]:
    def run(cid: str) -> None:
        subprocess.run(
            [binary, "--root", str(root), "run", "--bundle", str(bundle), cid],
            stdout=subprocess.DEVNULL,
            check=True,
        )

    return run


def _in_process(root: Path, bundle: Path) -> Callable[[str], None]:
    # As the engine will: one warm zygote for the process, then a fork per container.
    runtime.start_zygote()
    opts = runtime.CreateOptions(bundle=str(bundle), stdout=subprocess.DEVNULL)

    def run(cid: str) -> None:
        code = runtime.run(str(root), cid, opts)
        if code != 0:
            raise RuntimeError(f"exit {code}")

    return run


def _works(fn: Callable[[str], None]) -> bool:
    try:
        fn("probe-" + uuid.uuid4().hex[:8])
        return True
    except (subprocess.CalledProcessError, RuntimeError, OSError):
        return False


def main() -> int:
    # Measure the package as installed, with bytecode, even where the environment
    # says not to write any (PYTHONDONTWRITEBYTECODE).
    import compileall

    import moorage

    compileall.compile_dir(str(Path(moorage.__file__).parent), quiet=1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    try:
        bundle = _bundle(work)
        moor = str(Path(sys.executable).parent / "moor-runtime")
        candidates: dict[str, Callable[[str], None]] = {}
        for name in ("runc", "crun"):
            path = shutil.which(name)
            if path:
                candidates[name] = _cli(path, work / name, bundle)
        candidates["moor-runtime (CLI)"] = _cli(moor, work / "moor", bundle)
        candidates["moorage in-process"] = _in_process(work / "api", bundle)
        usable = {n: fn for n, fn in candidates.items() if _works(fn)}
        for name in candidates.keys() - usable.keys():
            print(f"skipping {name}: it cannot run the bundle here")
        times: dict[str, list[float]] = {name: [] for name in usable}
        for i in range(args.runs):
            for name, fn in usable.items():
                start = time.perf_counter()
                fn(f"b{i}")
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["runc"]) if "runc" in times else None
        print(f"`run` of busybox `true`, {args.runs} interleaved runs each")
        print(f"{'runtime':<22}{'median ms':>10}{'min':>8}{'max':>8}{'vs runc':>9}")
        results = {}
        for name, values in times.items():
            med = statistics.median(values)
            ratio = med / base if base else float("nan")
            results[name] = {"median_ms": med * 1000, "ratio_to_runc": ratio}
            print(
                f"{name:<22}{med * 1000:>10.1f}{min(values) * 1000:>8.1f}"
                f"{max(values) * 1000:>8.1f}{ratio:>8.2f}x"
            )
        print(json.dumps(results))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            leftover = ctrl / "moorage-bench"
            if leftover.is_dir():
                for child in sorted(leftover.rglob("*"), reverse=True):
                    if child.is_dir():
                        child.rmdir()
                leftover.rmdir()


if __name__ == "__main__":
    sys.exit(main())
