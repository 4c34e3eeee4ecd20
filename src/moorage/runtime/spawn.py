"""Starting the stage process that becomes a container (see ``moorage.runtime.init``).

The stage is a fresh interpreter exec'd from a sealed memfd copy, never a fork of
the caller: the caller may be a threaded asyncio daemon, and the container must
never see a writable host executable behind /proc/self/exe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from typing import IO

import moorage
from moorage.runtime.sync import Channel
from moorage.sys.sealed import sealed_interpreter

_BOOT = "import sys; sys.path[:0] = {paths!r}; from moorage.runtime.init import main; main()"

Stdio = int | IO[bytes] | None


def spawn_stage(
    *,
    label: str = "",
    preserve_fds: int = 0,
    extra_fds: Iterable[int] = (),
    stdin: Stdio = None,
    stdout: Stdio = None,
    stderr: Stdio = None,
) -> tuple[subprocess.Popen[bytes], Channel]:
    exe = sealed_interpreter(cache=True)
    parent, child = Channel.pair()
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(moorage.__file__)))
    paths = [package_root, *(p for p in sys.path if p and p != package_root)]
    env = {
        "PYTHONHOME": f"{sys.base_prefix}:{sys.base_exec_prefix}",
        "_MOOR_SYNC_FD": str(child.fileno()),
        "_MOOR_EXE_FD": str(exe),
    }
    debug = os.environ.get("MOOR_RUNTIME_DEBUG")
    if debug:
        env["MOOR_RUNTIME_DEBUG"] = debug
    pass_fds = (exe, child.fileno(), *range(3, 3 + preserve_fds), *extra_fds)
    try:
        proc = subprocess.Popen(
            # The label (the container id) shows in ps as the script argument.
            ["moor-runtime-init", "-S", "-s", "-B", "-c", _BOOT.format(paths=paths), label],
            executable=f"/proc/self/fd/{exe}",
            pass_fds=pass_fds,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
    finally:
        child.close()
    return proc, parent
