"""Building a container's root filesystem inside its new mount namespace.

Works on the validated config.json as a plain dict (the runtime validated it
before starting the init), so the init loads no model classes: every import
here is paid again by every container start.

Runs in the container's init, before and after pivot_root. Every mount target is
resolved with openat2(RESOLVE_IN_ROOT) relative to the rootfs and mounted through
its /proc/self/fd path, so a symlink planted in the image or in a volume can never
redirect a mount outside the rootfs (the CVE-2021-30465 class), and there is no
window between checking a path and mounting on it.
"""

from __future__ import annotations

import errno
import os
import stat

from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.runtime.mounts import REMOUNT_FLAGS, MountOptions, parse_options, propagation_flag
from moorage.sys import libc

TYPE_CHECKING = False  # the init imports this module: no typing at run time
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS

# The devices every container gets when /dev is a fresh tmpfs, as runc and Docker do.
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)

_STATVFS_TO_MS = (
    (os.ST_RDONLY, libc.MS_RDONLY),
    (os.ST_NOSUID, libc.MS_NOSUID),
    (os.ST_NODEV, libc.MS_NODEV),
    (os.ST_NOEXEC, libc.MS_NOEXEC),
    (os.ST_NOATIME, libc.MS_NOATIME),
    (os.ST_NODIRATIME, libc.MS_NODIRATIME),
    (os.ST_RELATIME, libc.MS_RELATIME),
)


def _clean(dest: str) -> str:
    """A destination as a path relative to the root, with no way to climb out of it."""
    return os.path.normpath("/" + dest).lstrip("/") or "."


def _procfd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd: int, dest: str, flags: int = os.O_PATH) -> int:
    return libc.openat2(root_fd, _clean(dest), flags, _IN_ROOT)


def make_in_root(root_fd: int, dest: str, *, directory: bool, mode: int = 0o755) -> int:
    """Create ``dest`` (and missing parents) inside the root; return an O_PATH fd to it."""
    rel = _clean(dest)
    try:
        return libc.openat2(root_fd, rel, os.O_PATH, _IN_ROOT)
    except FileNotFoundError:
        pass
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        try:
            os.close(libc.openat2(root_fd, sub, os.O_PATH, _IN_ROOT))
            continue
        except FileNotFoundError:
            pass
        parent = libc.openat2(root_fd, "/".join(parts[: i - 1]) or ".", os.O_PATH, _IN_ROOT)
        try:
            if i == len(parts) and not directory:
                fd = os.open(
                    parts[-1],
                    os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    mode,
                    dir_fd=parent,
                )
                os.close(fd)
            else:
                try:
                    os.mkdir(parts[i - 1], mode, dir_fd=parent)
                except FileExistsError:
                    pass
        finally:
            os.close(parent)
    return libc.openat2(root_fd, rel, os.O_PATH, _IN_ROOT)


def _locked_flags(path: str) -> int:
    """Flags of the mount at ``path`` that a remount inside a user namespace must keep."""
    vfs = os.statvfs(path)
    return sum(ms for st, ms in _STATVFS_TO_MS if vfs.f_flag & st and ms != libc.MS_RDONLY)


def _remount(root_fd: int, dest: str, flags: int) -> None:
    fd = open_in_root(root_fd, dest)
    try:
        target = _procfd(fd)
        locked = _locked_flags(target)
        libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT | locked | flags)
    finally:
        os.close(fd)


def _set_propagation(root_fd: int, dest: str, opts: MountOptions) -> None:
    if not opts.propagation:
        return
    fd = open_in_root(root_fd, dest)
    try:
        for flag in opts.propagation:
            libc.mount(None, _procfd(fd), None, flag)
    finally:
        os.close(fd)


def _bind_source(source: str, bundle: str) -> str:
    path = source if os.path.isabs(source) else os.path.join(bundle, source)
    if not os.path.exists(path):
        raise FailedPrecondition(f"bind mount source does not exist: {source}")
    return path


def _mount_one(
    root_fd: int, m: Mapping[str, Any], bundle: str, cgroup_paths: Mapping[str, str], cgroupns: bool
) -> None:
    destination: str = m.get("destination", "")
    where = f"mount {destination}"
    opts = parse_options(m.get("options", ()), where)
    fstype = m.get("type") or ("bind" if opts.is_bind else None)
    source_field: str | None = m.get("source")
    if not destination:
        raise InvalidArgument(f"{where}: empty destination")
    if opts.is_bind or fstype == "bind":
        source = _bind_source(source_field or "", bundle)
        fd = make_in_root(root_fd, destination, directory=os.path.isdir(source))
        try:
            rec = opts.flags & libc.MS_REC
            libc.mount(source, _procfd(fd), None, libc.MS_BIND | rec)
        finally:
            os.close(fd)
        extra = opts.flags & REMOUNT_FLAGS
        if extra:
            _remount(root_fd, destination, extra)
    elif fstype == "cgroup" or fstype == "cgroup2":
        _mount_cgroup(root_fd, destination, opts, cgroup_paths, cgroupns)
    else:
        fd = make_in_root(root_fd, destination, directory=True)
        try:
            if "tmpcopyup" in opts.extensions:
                _tmpcopyup(fd, opts)
            else:
                libc.mount(
                    source_field or fstype, _procfd(fd), fstype, opts.flags, opts.data or None
                )
        except OSError as exc:
            raise FailedPrecondition(
                f"{where}: mounting {fstype} failed: {os.strerror(exc.errno or 0)}"
            ) from exc
        finally:
            os.close(fd)
    _set_propagation(root_fd, destination, opts)


def _tmpcopyup(fd: int, opts: MountOptions) -> None:
    """Mount a tmpfs that starts with a copy of what the image had at that path."""
    import shutil

    staging = f"/tmp/.moor-tmpcopyup-{os.getpid()}"
    os.mkdir(staging, 0o700)
    try:
        libc.mount("tmpfs", staging, "tmpfs", opts.flags & ~libc.MS_RDONLY, opts.data or None)
        shutil.copytree(_procfd(fd), staging, symlinks=True, dirs_exist_ok=True)
        libc.mount(staging, _procfd(fd), None, libc.MS_MOVE)
    finally:
        try:
            libc.umount2(staging, libc.MNT_DETACH)
        except OSError:
            pass
        os.rmdir(staging)


def _mount_cgroup(
    root_fd: int,
    destination: str,
    opts: MountOptions,
    cgroup_paths: Mapping[str, str],
    cgroupns: bool,
) -> None:
    """/sys/fs/cgroup as the container should see it.

    On cgroup v2 this is one cgroup2 mount. On v1, as runc does: a tmpfs, and in it
    one directory per hierarchy holding the container's own cgroup (a fresh mount
    with a cgroup namespace, else a bind mount of the host directory).
    """
    flags = opts.flags & ~libc.MS_RDONLY
    if set(cgroup_paths) == {""}:  # pure cgroup v2
        fd = make_in_root(root_fd, destination, directory=True)
        try:
            if cgroupns:
                libc.mount("cgroup2", _procfd(fd), "cgroup2", opts.flags)
            else:
                libc.mount(cgroup_paths[""], _procfd(fd), None, libc.MS_BIND | libc.MS_REC)
        finally:
            os.close(fd)
        if not cgroupns and opts.flags & REMOUNT_FLAGS:
            _remount(root_fd, destination, opts.flags & REMOUNT_FLAGS)
        return
    fd = make_in_root(root_fd, destination, directory=True)
    try:
        libc.mount("tmpfs", _procfd(fd), "tmpfs", flags, "mode=755")
    finally:
        os.close(fd)
    for controller, host_dir in sorted(cgroup_paths.items()):
        if not controller:
            continue  # hybrid: like runc, show the v1 hierarchies only
        name = controller.removeprefix("name=")
        dest = f"{destination.rstrip('/')}/{name}"
        sub = make_in_root(root_fd, dest, directory=True)
        try:
            if cgroupns:
                libc.mount("cgroup", _procfd(sub), "cgroup", flags, controller)
            else:
                libc.mount(host_dir, _procfd(sub), None, libc.MS_BIND | libc.MS_REC)
        finally:
            os.close(sub)
        _remount(root_fd, dest, opts.flags & REMOUNT_FLAGS)


def _make_device(root_fd: int, dev: Mapping[str, Any], in_userns: bool) -> None:
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    file_mode = dev.get("fileMode")
    mode = (file_mode if file_mode is not None else 0o666) & 0o7777
    path: str = dev["path"]
    rel = _clean(path)
    parent_rel = os.path.dirname(rel)
    if parent_rel:
        os.close(make_in_root(root_fd, parent_rel, directory=True))
    parent = libc.openat2(root_fd, parent_rel or ".", os.O_PATH, _IN_ROOT)
    name = os.path.basename(rel)
    try:
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        if in_userns:
            # mknod is not allowed in a user namespace: bind the host's node instead.
            fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o000, dir_fd=parent)
            os.close(fd)
            target = libc.openat2(parent, name, os.O_PATH, _IN_ROOT)
            try:
                libc.mount(path, _procfd(target), None, libc.MS_BIND)
            finally:
                os.close(target)
            return
        rdev = os.makedev(dev.get("major", 0), dev.get("minor", 0))
        os.mknod(name, kinds[dev["type"]] | mode, rdev, dir_fd=parent)
        os.chmod(name, mode, dir_fd=parent)  # mknod is subject to the umask
        os.chown(name, dev.get("uid") or 0, dev.get("gid") or 0, dir_fd=parent)
    finally:
        os.close(parent)


def _dev_symlinks(root_fd: int, has_pts: bool) -> None:
    links = [
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
    ]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "dev/core"))
    if has_pts:
        links.append(("pts/ptmx", "dev/ptmx"))
    dev = libc.openat2(root_fd, "dev", os.O_PATH | os.O_DIRECTORY, _IN_ROOT)
    try:
        for target, link in links:
            name = link.removeprefix("dev/")
            try:
                os.unlink(name, dir_fd=dev)
            except FileNotFoundError:
                pass
            os.symlink(target, name, dir_fd=dev)
    finally:
        os.close(dev)


def _mount_point_of(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def prepare(
    config: Mapping[str, Any],
    rootfs: str,
    bundle: str,
    cgroup_paths: Mapping[str, str],
    *,
    in_userns: bool,
    cgroupns: bool,
) -> None:
    """Everything before pivot_root: propagation, the rootfs bind, mounts and /dev."""
    linux = config.get("linux", {})
    prop = linux.get("rootfsPropagation")
    root_prop = propagation_flag(prop) if prop else libc.MS_SLAVE | libc.MS_REC
    libc.mount(None, "/", None, root_prop)
    # pivot_root refuses a new root whose parent mount is shared.
    libc.mount(None, _mount_point_of(os.path.dirname(rootfs)), None, libc.MS_PRIVATE)
    libc.mount(rootfs, rootfs, None, libc.MS_BIND | libc.MS_REC)
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dev_is_tmpfs = False
        has_pts = False
        for m in config.get("mounts", ()):
            _mount_one(root_fd, m, bundle, cgroup_paths, cgroupns)
            dest = "/" + _clean(m.get("destination", ""))
            if dest == "/dev":
                dev_is_tmpfs = m.get("type") == "tmpfs"
            elif dest == "/dev/pts":
                has_pts = True
        if dev_is_tmpfs:
            for path, major, minor in DEFAULT_DEVICES:
                device = {"type": "c", "path": path, "major": major, "minor": minor}
                _make_device(root_fd, device, in_userns)
            _dev_symlinks(root_fd, has_pts)
        for dev in linux.get("devices", ()):
            _make_device(root_fd, dev, in_userns)
        cwd = config.get("process", {}).get("cwd")
        if cwd:
            try:
                os.close(make_in_root(root_fd, cwd, directory=True))
            except OSError as exc:
                raise InvalidArgument(
                    f"config.json: process.cwd {cwd!r}: {os.strerror(exc.errno or 0).lower()}"
                ) from exc
    finally:
        os.close(root_fd)


def pivot(rootfs: str) -> None:
    """pivot_root into ``rootfs`` and detach the old root, so no host path stays reachable."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        # pivot_root(".", ".") stacks the old root on top of the new one; no
        # directory for it is needed inside the image.
        libc.pivot_root(".", ".")
        os.fchdir(old_root)
        # Keep our unmount from propagating to the host before detaching it.
        libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
        libc.umount2(".", libc.MNT_DETACH)
        os.fchdir(new_root)
    finally:
        os.close(old_root)
        os.close(new_root)
    os.chdir("/")


def mask_paths(paths: Iterable[str]) -> None:
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                libc.mount("tmpfs", path, "tmpfs", libc.MS_RDONLY)
            else:
                libc.mount("/dev/null", path, None, libc.MS_BIND)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise


def readonly_paths(paths: Iterable[str]) -> None:
    for path in paths:
        try:
            libc.mount(path, path, None, libc.MS_BIND | libc.MS_REC)
        except FileNotFoundError:
            continue
        locked = _locked_flags(path)
        libc.mount(
            None, path, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_REC | locked
        )


def readonly_root() -> None:
    locked = _locked_flags("/")
    libc.mount(None, "/", None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | locked)


def write_sysctls(sysctl: Mapping[str, str]) -> None:
    for key, value in sysctl.items():
        rel = key.replace(".", "/")
        if ".." in rel.split("/"):
            raise InvalidArgument(f"invalid sysctl key: {key}")
        try:
            with open(f"/proc/sys/{rel}", "w") as f:
                f.write(value)
        except OSError as exc:
            raise FailedPrecondition(
                f"sysctl {key}={value}: {os.strerror(exc.errno or 0)}"
            ) from exc
