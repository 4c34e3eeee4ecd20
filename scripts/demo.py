"""make demo: the guide's "first container", on Moorage.

Starts a private ``moor daemon`` (its own socket, root and exec root, so the demo
never touches a daemon the user runs), bootstraps a busybox image, builds the guide's
first container from ``examples/first-container`` (``moor build -t myapp .``), runs it
with its port published (``-p 3000:3000``, another free port when 3000 is taken),
asks it from the host, and shows ``ps``, ``logs``, ``exec``, ``port`` and ``inspect``
the way the guide walks through them with docker.
The daemon has a bridge (``moordemo0``) and a cgroup parent of its own, and
everything, those and its nftables table included, is removed at the end, even on
failure.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "first-container"
ASK = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc 127.0.0.1 3000'
BRIDGE = "moordemo0"
CGROUP_PARENT = "/moorage-demo"


def _host_port() -> int:
    """3000 as in the guide, unless something on this host has it."""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", 3000))
            return 3000
        except OSError:
            s.bind(("0.0.0.0", 0))
            return int(s.getsockname()[1])


def _fetch(port: int, path: str = "/") -> str:
    """What ``curl http://127.0.0.1:PORT/PATH`` shows: the body."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            # The body: after the headers' blank line (a CGI script's may be bare \n).
            return re.split(rb"\r?\n\r?\n", data, maxsplit=1)[-1].decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


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
            "--bridge",
            BRIDGE,
            "--cgroup-parent",
            CGROUP_PARENT,
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
        moor("build", "-t", "myapp", str(EXAMPLE))
        moor("build", "-t", "myapp", str(EXAMPLE))  # again: every step from the cache
        port = _host_port()
        moor("run", "-d", "--name", "web", "-p", f"{port}:3000", "myapp")
        moor("exec", "web", "sh", "-c", ASK)
        for path in ("/", "/cgi-bin/hello"):
            print(f"$ curl http://127.0.0.1:{port}{path}", flush=True)
            print(_fetch(port, path), end="", flush=True)
        moor("port", "web")
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
        subprocess.run(["ip", "link", "del", BRIDGE], check=False, capture_output=True)
        for hierarchy in [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").iterdir()]:
            with contextlib.suppress(OSError):  # only when empty, as it is by now
                (hierarchy / CGROUP_PARENT.lstrip("/")).rmdir()
        subprocess.run(
            ["nft", "delete", "table", "ip", f"moorage_{BRIDGE}"], check=False, capture_output=True
        )
        subprocess.run(["umount", "-R", "-l", str(work / "root")], check=False, capture_output=True)
        shutil.rmtree(exec_root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
