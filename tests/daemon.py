"""A private ``moor daemon`` for tests: its own socket, root and exec root."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from moorage.api.client import Client
from netclean import new_test_bridge, remove_daemon_networks


class Daemon:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.exec_root = Path(f"/run/moorage-test-{uuid.uuid4().hex[:8]}")
        self.socket = self.exec_root / "moor.sock"
        self.log = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # Its containers' cgroups go under a parent of its own, removed by cleanup().
        self.cgroup_parent = f"/moorage-test/{self.exec_root.name}"
        # And a default bridge (and so an nftables table) of its own.
        self.bridge = new_test_bridge()

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    # What a subclass (bench/run.py) may change.
    log_level = "debug"
    new_session = False  # True: a Ctrl-C on the caller does not reach the daemon
    extra_args: tuple[str, ...] = ()  # more `moor daemon` flags

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
                    self.log_level,
                    "--cgroup-parent",
                    self.cgroup_parent,  # removed by cleanup()
                    "--bridge",
                    self.bridge,  # removed by cleanup()
                    *self.extra_args,
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=self.new_session,
            )
        client = Client(str(self.socket))
        deadline = time.monotonic() + timeout
        while not client.ping():
            if self.proc.poll() is not None:
                raise self.failed(f"daemon exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise self.failed(f"daemon did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def failed(self, message: str) -> Exception:
        return RuntimeError(message)

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

    def remove_containers(self) -> None:
        """Force-remove every container through the API (while the daemon runs)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        client = Client(str(self.socket), timeout=60)
        try:
            for c in client.get_json("/containers/json", all=1):
                client.request("DELETE", f"/containers/{c['Id']}", params={"force": 1}).read()
        except Exception:  # cleanup goes on with the blunter tools below
            pass

    def kill_leftovers(self) -> None:
        """Monitors and runtime containers left by a daemon that is gone."""
        from moorage.runtime import api

        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read()
            except OSError:
                continue
            if b"moorage.engine.monitor" in argv and str(self.base).encode() in argv:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        runtime_root = self.exec_root / "runtime"
        if runtime_root.is_dir():
            for cid in os.listdir(runtime_root):
                with contextlib.suppress(Exception):
                    api.delete(str(runtime_root), cid, force=True)

    def remove_cgroup_parent(self) -> None:
        """The (empty) parent cgroup of this daemon's containers and its ancestors that
        are left empty, in every hierarchy; a cgroup in use refuses rmdir."""
        top = Path("/sys/fs/cgroup")
        parts = Path(self.cgroup_parent.lstrip("/")).parts
        for hierarchy in [top, *(p for p in top.iterdir() if p.is_dir())]:
            for depth in range(len(parts), 0, -1):
                try:
                    hierarchy.joinpath(*parts[:depth]).rmdir()
                except OSError:
                    break

    def cleanup(self) -> None:
        self.remove_containers()
        self.stop()
        self.kill_leftovers()
        self.remove_cgroup_parent()
        remove_daemon_networks(self.root, self.bridge)
        keep = os.environ.get("MOOR_TEST_KEEP_LOGS")  # a directory, for debugging a failure
        if keep and self.log.exists():
            os.makedirs(keep, exist_ok=True)
            shutil.copy(self.log, os.path.join(keep, f"daemon-{self.exec_root.name}.log"))
        # Snapshots are only mounted while in use; a crashed test may leave some.
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for target in sorted(mounts, reverse=True):
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        os.sync()


@contextlib.contextmanager
def running_daemon(base: Path, *, busybox: bool = False) -> Iterator[Daemon]:
    """A started private daemon (with the busybox image if asked), cleaned up after."""
    d = Daemon(base)
    d.base.mkdir()
    try:
        d.start()
        if busybox:
            d.moor("bootstrap", "busybox")
        yield d
    finally:
        d.cleanup()
