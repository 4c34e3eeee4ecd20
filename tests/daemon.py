"""A private ``moor daemon`` for tests: its own socket, root and exec root."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from moorage.api.client import Client


class Daemon:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.exec_root = Path(f"/run/moorage-test-{uuid.uuid4().hex[:8]}")
        self.socket = self.exec_root / "moor.sock"
        self.log = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moorage.cli.main",
                    "daemon",
                    "-H",
                    self.host,
                    "--root",
                    str(self.root),
                    "--exec-root",
                    str(self.exec_root),
                    "--log-level",
                    "debug",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        client = Client(str(self.socket))
        deadline = time.monotonic() + timeout
        while not client.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def moor(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        stdout_file: Path | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "moorage.cli.main", "-H", self.host, *args]
        if stdout_file is not None:
            with open(stdout_file, "wb") as out:
                result = subprocess.run(
                    cmd, input=input, stdout=out, stderr=subprocess.PIPE, timeout=300, check=False
                )
        else:
            result = subprocess.run(cmd, input=input, capture_output=True, timeout=300, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"moor {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}"
            )
        return result

    def cleanup(self) -> None:
        self.stop()
        # Snapshots are only mounted while in use; a crashed test may leave some.
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for target in sorted(mounts, reverse=True):
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        os.sync()
