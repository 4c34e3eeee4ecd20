"""A private dockerd (Debian's docker.io) for interop tests and benchmarks.

Its own socket, data root and exec root; by default no iptables rules and no bridge,
so it changes nothing on the host's network. A caller that wants docker's networking
(bench/net.py) passes other options, and then owns the cleanup of what dockerd adds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

# dockerd's options besides its private paths, unless the caller names others.
NO_NETWORK_OPTIONS = ("--iptables=false", "--ip6tables=false", "--bridge=none")


def available() -> bool:
    return shutil.which("dockerd") is not None and shutil.which("docker") is not None


class DockerDaemon:
    def __init__(self, base: Path, options: Sequence[str] = NO_NETWORK_OPTIONS) -> None:
        self.base = base
        # Read at each start(): a caller may change them between a stop and a start.
        self.options = list(options)
        self.exec_root = Path(f"/run/moorage-dockerd-{uuid.uuid4().hex[:8]}")
        self.socket = self.base / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    new_session = False  # True: a Ctrl-C on the caller does not reach dockerd

    def start(self, timeout: float = 60.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    "--data-root",
                    str(self.base / "data"),
                    "--exec-root",
                    str(self.exec_root),
                    "-H",
                    f"unix://{self.socket}",
                    "--pidfile",
                    str(self.base / "docker.pid"),
                    *self.options,
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=self.new_session,
            )
        deadline = time.monotonic() + timeout
        while self.docker("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise self.failed(
                    "dockerd did not start: " + (self.base / "dockerd.log").read_text()[-2000:]
                )
            time.sleep(0.1)

    def failed(self, message: str) -> Exception:
        return RuntimeError(message)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, timeout=600, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stderr.decode()}")
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for target in sorted(mounts, reverse=True):
            if target.startswith((str(self.base), str(self.exec_root))):
                subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
