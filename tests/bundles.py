"""Throwaway OCI bundles on a busybox root filesystem, for tests and the demo.

The root filesystem is made from Debian's busybox-static: one static binary and a
symlink per applet, plus the few files a container expects (/etc/passwd...).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from moorage.oci.default_spec import default_spec

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def _is_static_elf(path: str) -> bool:
    """True when the 64-bit ELF at ``path`` has no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return False
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") != 3
        for i in range(phnum)
    )


def busybox_binary() -> str | None:
    """A statically linked busybox: it must run inside a root with no libraries."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path) and _is_static_elf(os.path.realpath(path)):
            return path
    return None


def make_busybox_rootfs(rootfs: Path) -> Path:
    busybox = busybox_binary()
    if busybox is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/user", "var/tmp"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n")
    (rootfs / "etc" / "hostname").write_text("busybox\n")
    os.chown(rootfs / "home" / "user", 1000, 1000)
    return rootfs


def make_bundle(
    bundle: Path,
    args: list[str],
    *,
    template: Path | None = None,
    cgroups_path: str | None = None,
    edit: Any = None,
) -> Path:
    """A bundle at ``bundle`` whose process runs ``args``; ``edit(config)`` may change it."""
    bundle.mkdir(parents=True, exist_ok=True)
    rootfs = bundle / "rootfs"
    if template is not None:
        shutil.copytree(template, rootfs, symlinks=True)
    else:
        make_busybox_rootfs(rootfs)
    config = default_spec(args=args, terminal=False)
    config["root"]["readonly"] = False
    config["linux"]["cgroupsPath"] = cgroups_path or f"/moorage-test/{uuid.uuid4().hex[:12]}"
    if edit is not None:
        edit(config)
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    return bundle
