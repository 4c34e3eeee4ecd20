"""make demo: the guide's "first container", on Moorage's own OCI runtime.

Makes a busybox root filesystem, writes a bundle with Docker's defaults, runs a
container from it with `moor-runtime run`, and shows what it printed: its
hostname, its identity, and a process list in which it is PID 1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bundles import make_bundle  # noqa: E402

SCRIPT = (
    'echo "hello from $(hostname)"; '
    'echo "I am: $(id)"; '
    "echo 'my processes:'; ps -o pid,user,args; "
    'echo "capabilities: $(grep CapEff /proc/self/status)"'
)


def main() -> int:
    runtime = str(Path(sys.executable).parent / "moor-runtime")
    work = Path(tempfile.mkdtemp(prefix="moorage-demo-"))
    root = work / "state"
    try:

        def edit(config: dict[str, object]) -> None:
            config["hostname"] = "first-container"

        bundle = make_bundle(work / "bundle", ["sh", "-c", SCRIPT], edit=edit)
        print(f"$ moor-runtime run --bundle {bundle} demo", flush=True)
        result = subprocess.run(
            [runtime, "--root", str(root), "run", "--bundle", str(bundle), "demo"], check=False
        )
        print(f"(exit status {result.returncode})")
        print("\n$ moor-runtime features | head", flush=True)
        features = json.loads(subprocess.check_output([runtime, "features"]))
        print(f"namespaces: {', '.join(features['linux']['namespaces'])}")
        print(f"seccomp: {features['linux']['seccomp'].get('enabled')}")
        return result.returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
