"""Seccomp profiles compiled once: content-addressed BPF programs on disk.

Compiling Docker's default profile with libseccomp costs milliseconds, and nearly
every container uses the same profile. The program is cached under the runtime
root by the SHA-256 of the profile's canonical JSON, written atomically, so a
cache file is either absent or whole; the init loads it with seccomp(2).
"""

import base64
import contextlib
import hashlib
import json
import os
from typing import Any

from moorage.sys.seccomp_bpf import FILTER_FLAGS


def program_for(profile: dict[str, Any], root: str) -> dict[str, Any]:
    """The bootstrap form of ``profile``: its BPF program (base64) and load flags."""
    canonical = json.dumps(profile, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical).hexdigest()
    cache_dir = os.path.join(root, ".seccomp-cache")
    path = os.path.join(cache_dir, f"{digest}.bpf")
    try:
        with open(path, "rb") as f:
            program = f.read()
    except FileNotFoundError:
        program = _compile(profile)
        _store(cache_dir, path, program)
    flags = 0
    for name in profile.get("flags", ()):
        flags |= FILTER_FLAGS.get(name, 0)
    return {"bpf": base64.b64encode(program).decode(), "flags": flags}


def _compile(profile: dict[str, Any]) -> bytes:
    from moorage.sys import seccomp as sc

    rules = tuple(
        sc.Rule(
            names=tuple(r.get("names", ())),
            action=r["action"],
            errno_ret=r.get("errnoRet"),
            args=tuple(
                sc.ArgCondition(a["index"], a["value"], a.get("valueTwo", 0), a["op"])
                for a in r.get("args", ())
            ),
        )
        for r in profile.get("syscalls", ())
    )
    compiled = sc.compile_filter(
        sc.FilterSpec(
            default_action=profile["defaultAction"],
            default_errno_ret=profile.get("defaultErrnoRet"),
            architectures=tuple(profile.get("architectures", ())),
            flags=tuple(profile.get("flags", ())),
            rules=rules,
        )
    )
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        compiled.export_bpf(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(os.dup(fd), "rb") as reader:
            return reader.read()
    finally:
        os.close(fd)
        compiled.release()


def _store(cache_dir: str, path: str, program: bytes) -> None:
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(program)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
