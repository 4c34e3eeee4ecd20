"""make demo: the guide's "first container", on Moorage.

Starts a private ``moor daemon`` (its own socket, root and exec root, so the demo
never touches a daemon the user runs), bootstraps a busybox image, runs a small
web server in a container, and shows ``ps``, ``logs``, ``exec`` and ``inspect``
the way the guide walks through them with docker. Port publishing (``-p
3000:3000``) arrives with networking; until then the demo asks the server from
inside the container. Everything is removed at the end, even on failure.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SERVER = (
    'mkdir -p /www && echo "Hello from Moorage!" > /www/index.html && '
    'echo "listening on :3000" && exec httpd -f -v -p 3000 -h /www'
)
ASK = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc 127.0.0.1 3000'


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="moorage-demo-"))
    exec_root = Path(tempfile.mkdtemp(prefix="moorage-demo-", dir="/run"))
    host = f"unix://{exec_root}/moor.sock"
    log = open(work / "daemon.log", "wb")  # noqa: SIM115 (closed in finally)
    daemon = subprocess.Popen(
        [
            str(BIN / "moor"),
            "daemon",
            "-H",
            host,
            "--root",
            str(work / "root"),
            "--exec-root",
            str(exec_root),
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )

    def moor(*args: str, show: bool = True, check: bool = True) -> str:
        if show:
            print(f"$ moor {shlex.join(args)}", flush=True)
        result = subprocess.run(
            [str(BIN / "moor"), "-H", host, *args], capture_output=True, text=True, check=False
        )
        if show:
            print(result.stdout, end="", flush=True)
            print(result.stderr, end="", file=sys.stderr, flush=True)
        if check and result.returncode != 0:
            raise SystemExit(f"moor {' '.join(args)} failed ({result.returncode})")
        return result.stdout

    try:
        deadline = time.monotonic() + 30
        while (
            moor("version", show=False, check=False) == "" or not (exec_root / "moor.sock").exists()
        ):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"moor daemon did not start: see {work / 'daemon.log'}")
            time.sleep(0.05)
        moor("bootstrap", "busybox")
        moor("run", "--rm", "busybox", "echo", "hello from my first container")
        moor(
            "run",
            "-d",
            "--name",
            "web",
            "--health-cmd",
            ASK,
            "--health-interval",
            "1s",
            "busybox",
            "sh",
            "-c",
            SERVER,
        )
        moor("exec", "web", "sh", "-c", ASK)
        for _ in range(50):
            if "(healthy)" in moor("ps", "--format", "{{.Status}}", show=False):
                break
            time.sleep(0.1)
        moor("ps")
        moor("logs", "web")
        moor("inspect", "--format", "{{.State.Status}} pid={{.State.Pid}}", "web")
        moor("stop", "-t", "1", "web")
        moor("rm", "web")
        moor("ps", "-a")
        return 0
    finally:
        moor("rm", "-f", "web", show=False, check=False)
        daemon.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(timeout=30)
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        subprocess.run(["umount", "-R", "-l", str(work / "root")], check=False, capture_output=True)
        shutil.rmtree(exec_root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
