"""``moor bootstrap``: base images without a registry.

``busybox`` is made from Debian's busybox-static (one static binary and a link per
applet); ``debian:SUITE`` from mmdebstrap against the host's configured mirror.
Either way the result is a root filesystem tarball, imported like ``moor import``:
an ordinary one-layer image.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile

import click

from moorage.cli.connect import client
from moorage.errors import FailedPrecondition, InvalidArgument

BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
DIRS = (
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("var", 0o755),
    ("var/tmp", 0o1777),
)
FILES = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ),
    "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "etc/hostname": "busybox\n",
}


def _static_busybox() -> str:
    for path in BUSYBOX_PATHS:
        if os.path.exists(path):
            with open(path, "rb") as f:
                head = f.read(4096)
            if head[:4] == b"\x7fELF" and b"ld-linux" not in head:
                return path
    raise FailedPrecondition("busybox-static is not installed (apt-get install busybox-static)")


def busybox_tar(out: io.BufferedIOBase) -> None:
    """A busybox root filesystem as a reproducible tar (fixed times, sorted entries)."""
    busybox = _static_busybox()
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in DIRS:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        info = tar.gettarinfo(busybox, "bin/busybox")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with open(busybox, "rb") as f:
            tar.addfile(info, f)
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        for name, text in sorted(FILES.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def debian_tar(suite: str, include: list[str], path: str) -> None:
    if shutil.which("mmdebstrap") is None:
        raise FailedPrecondition("mmdebstrap is not installed (apt-get install mmdebstrap)")
    cmd = ["mmdebstrap", "--variant=minbase", "--quiet", "--mode=root", suite, path]
    if include:
        cmd.insert(1, "--include=" + ",".join(include))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FailedPrecondition(f"mmdebstrap {suite} failed: {result.stderr.strip()[-500:]}")


def _import(ctx: click.Context, path: str, reference: str, changes: list[str]) -> None:
    from moorage.cli.images import post_import

    repo, _, tag = reference.rpartition(":")
    c = client(ctx.obj.get("host") if ctx.obj else None)
    with open(path, "rb") as f:
        for status in post_import(c, f, repo, tag, changes, f"moor bootstrap {reference}"):
            click.echo(status)


@click.command("bootstrap")
@click.option("--include", default="", help="extra Debian packages, comma-separated")
@click.option("-t", "--tag", "name", default=None, help="image name (default: the source)")
@click.argument("source")
@click.pass_context
def bootstrap_cmd(ctx: click.Context, include: str, name: str | None, source: str) -> None:
    """Make a base image: busybox, or debian:SUITE (e.g. debian:bookworm)."""
    kind, _, suite = source.partition(":")
    with tempfile.TemporaryDirectory(prefix="moor-bootstrap-") as tmp:
        path = os.path.join(tmp, "rootfs.tar")
        if kind == "busybox":
            if include:
                raise InvalidArgument("bootstrap: --include is for debian images")
            with open(path, "wb") as out:
                busybox_tar(out)
            _import(ctx, path, _with_tag(name or "busybox"), ['CMD ["sh"]'])
        elif kind == "debian":
            suite = suite or "bookworm"
            packages = [p.strip() for p in include.split(",") if p.strip()]
            debian_tar(suite, packages, path)
            _import(ctx, path, _with_tag(name or f"debian:{suite}"), ['CMD ["bash"]'])
        else:
            raise InvalidArgument(f"bootstrap: unknown source {source!r} (busybox or debian:SUITE)")


def _with_tag(reference: str) -> str:
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last else f"{reference}:latest"
