"""Builds (``POST /build``): the engine's side of the builder.

The executor (``moorage.build.executor``) turns a Dockerfile into image states; this
module gives it what it needs from the engine (:class:`_Backend`): base images from the
image service, writable root filesystems (overlay snapshots of a state's layers, GC
roots while in use), layers stored from their changes, and RUN steps run as real
containers under a monitor forked from the engine's zygote, on the default bridge
unless the step asks for ``none`` or ``host``. It keeps the build cache
(:class:`BuildCache`: ``<root>/builder/cache.db``, which survives daemon restarts;
every layer a cache entry names is a GC root until the entry is pruned).

Layout::

    <root>/builder/
      cache.db                      step key -> the state it produced
      work/<id>/                    a build's context and its steps' bundles (removed after)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from moorage.build.backend import RunProcess, Workspace
from moorage.build.executor import BuildOptions, Executor
from moorage.build.state import ImageState, Layer
from moorage.errors import InvalidArgument, MoorageError, NotFound
from moorage.oci.image import chain_id_above
from moorage.sys import libc

__all__ = ["BuildCache", "BuildRequest", "BuildService"]

log = logging.getLogger(__name__)

_CACHE_OWNER = "buildcache:"
_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS


@dataclass(frozen=True)
class BuildRequest:
    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    target: str | None = None
    build_args: Mapping[str, str | None] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    platform: str | None = None
    network_mode: str = "default"
    quiet: bool = False
    secrets: Mapping[str, bytes] = field(default_factory=dict)


class BuildCache:
    """Step key -> image state, in SQLite; each entry holds its layers as GC roots."""

    def __init__(self, path: str, images: Any) -> None:
        self.images = images
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
            "created REAL NOT NULL, used REAL NOT NULL)"
        )

    def get(self, key: str) -> ImageState | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE cache SET used = ? WHERE key = ?", (time.time(), key))
        state = ImageState.from_dict(json.loads(row[0]))
        if not all(self.images.content.exists(layer.descriptor.digest) for layer in state.layers):
            return None  # its blobs went (a prune of the store): not a hit
        return state

    def put(self, key: str, state: ImageState) -> None:
        for layer in state.layers:
            self.images.db.add_root("content", str(layer.descriptor.digest), _CACHE_OWNER + key)
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cache (key, state, created, used) VALUES (?, ?, ?, ?)",
                (key, json.dumps(state.to_dict()), now, now),
            )

    def prune(self, until: float | None = None) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT key, state, used FROM cache").fetchall()
        removed = []
        for key, raw, used in rows:
            if until is not None and used >= until:
                continue
            for layer in ImageState.from_dict(json.loads(raw)).layers:
                self.images.db.remove_root(
                    "content", str(layer.descriptor.digest), _CACHE_OWNER + key
                )
            with self._lock:
                self._db.execute("DELETE FROM cache WHERE key = ?", (key,))
            removed.append(key)
        return removed

    def close(self) -> None:
        self._db.close()


@dataclass
class _Workspace:
    path: str
    key: str
    parent: str  # the chain id of the layers below, "" for none
    # The chain id this workspace's snapshot becomes once a layer was taken from it:
    # the next step then starts from it instead of unpacking that layer again.
    commit_as: str | None = None


class _Backend:
    """The executor's view of the engine (see ``moorage.build.backend.Backend``)."""

    def __init__(
        self,
        service: BuildService,
        workdir: str,
        lease: Any,
        pull: Callable[[str], None] | None = None,
    ) -> None:
        self.service = service
        self.images = service.images
        self.workdir = workdir
        self.lease = lease
        self.puller = pull
        # A base is pulled once per build, however many stages or steps name it.
        self._pulled: set[str] = set()
        self._pulled_lock = threading.Lock()

    def _pull(self, puller: Callable[[str], None], ref: str) -> None:
        try:
            puller(ref)
        except MoorageError as exc:
            raise type(exc)(f"pulling {ref}: {exc}") from None
        with self._pulled_lock:
            self._pulled.add(ref)

    @property
    def architecture(self) -> str:
        from moorage.oci.platform import host_platform

        return host_platform().architecture

    def base_image(self, ref: str, *, pull: bool) -> ImageState:
        puller = self.puller
        with self._pulled_lock:
            done = ref in self._pulled
        if pull and puller is not None and not done:
            self._pull(puller, ref)
        try:
            image = self.images.resolve(ref)
        except NotFound:
            if puller is None or done:
                raise NotFound(
                    f"pull access denied for {ref}, repository does not exist or may require "
                    f"'docker login': no such image in the local store"
                ) from None
            self._pull(puller, ref)  # as docker build does for a base it lacks
            image = self.images.resolve(ref)
        layers = tuple(
            Layer(d, diff_id)
            for d, diff_id in zip(image.manifest.layers, image.config.rootfs.diff_ids, strict=True)
        )
        return ImageState(layers, image.config, stored_id=str(image.config_digest))

    @contextlib.contextmanager
    def workspace(self, state: ImageState) -> Iterator[Workspace]:
        from moorage.store.snapshots.mount import mount_all, unmount

        parent = self.images.unpack_layers(
            [layer.descriptor for layer in state.layers],
            [layer.diff_id for layer in state.layers],
        )
        key = f"build-{secrets.token_hex(16)}"
        owner = "build:" + key
        self.images.db.add_root("snapshot", key, owner)
        snapshots = self.images.snapshots
        path = tempfile.mkdtemp(prefix="rootfs-", dir=self.workdir)
        try:
            snapshots.prepare(key, parent or None)
            mount_all(snapshots.mounts(key), path)
            workspace = _Workspace(path, key, parent)
            try:
                yield workspace
            finally:
                unmount(path)
            if workspace.commit_as is not None and not self.images.has_snapshot(
                workspace.commit_as
            ):
                with contextlib.suppress(MoorageError):  # another build's, made meanwhile
                    snapshots.commit(workspace.commit_as, key)
        finally:
            with contextlib.suppress(MoorageError):
                if snapshots.stat(key).kind == "active":
                    snapshots.remove(key)
            self.images.db.remove_root("snapshot", key, owner)
            with contextlib.suppress(OSError):
                os.rmdir(path)

    def layer_of(self, workspace: Workspace, source_date_epoch: int) -> Layer | None:
        from moorage.engine.formats import layer_sink
        from moorage.store.archive_diff import write_diff

        assert isinstance(workspace, _Workspace)
        snapshots = self.images.snapshots
        # Written straight into the compressor and the store: no spooled tar.
        with layer_sink(self.images.content, lease=self.lease, leases=self.images.leases) as sink:
            out = cast(IO[bytes], sink)
            if snapshots.whiteout_mode == "overlay":
                stats = write_diff(
                    out,  # type: ignore[arg-type]
                    snapshots.writable_dir(workspace.key),
                    source_date_epoch=source_date_epoch,
                )
            else:
                stats = self._copy_diff(workspace, out, source_date_epoch)
            if stats.files == 0 and stats.whiteouts == 0:
                sink.abandon()
        if sink.stored is None:
            return None
        stored = sink.stored
        workspace.commit_as = str(chain_id_above(workspace.parent, stored.diff_id))
        return Layer(stored.descriptor, stored.diff_id)

    def _copy_diff(self, workspace: _Workspace, out: IO[bytes], epoch: int) -> Any:
        from moorage.store.archive_diff import write_diff
        from moorage.store.snapshots.mount import mounted

        snapshots = self.images.snapshots
        upper = snapshots.writable_dir(workspace.key)
        parents = snapshots.parent_mounts(workspace.key)
        if parents:
            with mounted(parents) as lower:
                return write_diff(out, upper, lower=lower, source_date_epoch=epoch)  # type: ignore[arg-type]
        empty = tempfile.mkdtemp(dir=self.workdir)
        try:
            return write_diff(out, upper, lower=empty, source_date_epoch=epoch)  # type: ignore[arg-type]
        finally:
            os.rmdir(empty)

    def cache_dir(self, cache_id: str, mode: int, uid: int, gid: int) -> str:
        import hashlib

        name = hashlib.sha256(cache_id.encode()).hexdigest()[:32]
        path = os.path.join(self.service.root, "cache-mounts", name)
        if not os.path.isdir(path):
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            staging = tempfile.mkdtemp(dir=os.path.dirname(path))
            os.chmod(staging, mode)
            os.chown(staging, uid, gid)
            try:
                os.rename(staging, path)
            except OSError:  # another build made it first
                os.rmdir(staging)
        return path

    def lookup_user(self, workspace: Workspace, user: str) -> tuple[int, int]:
        from moorage.engine.etcfiles import lookup_user

        uid, gid, _ = lookup_user(workspace.path, user)
        return uid, gid

    def run(
        self, workspace: Workspace, process: RunProcess, output: Callable[[bytes], None]
    ) -> int:
        return self.service.run_step(workspace.path, process, output, self.workdir)


class BuildService:
    def __init__(self, root: str, images: Any, containers: Any, networks: Any) -> None:
        self.root = os.path.join(root, "builder")
        os.makedirs(os.path.join(self.root, "work"), mode=0o700, exist_ok=True)
        for leftover in os.listdir(os.path.join(self.root, "work")):  # a crash's
            _unmount_context(os.path.join(self.root, "work", leftover, "context"))
            shutil.rmtree(os.path.join(self.root, "work", leftover), ignore_errors=True)
        self.images = images
        self.containers = containers
        self.networks = networks
        self.cache = BuildCache(os.path.join(self.root, "cache.db"), images)

    def close(self) -> None:
        self.cache.close()

    # --- a build -----------------------------------------------------------------------

    def build(
        self,
        context: BinaryIO | None,
        request: BuildRequest,
        emit: Callable[[dict[str, Any]], None],
        *,
        context_dir: str | None = None,
        pull: Callable[[str], None] | None = None,
    ) -> str:
        """Build from ``context`` (a tar), or from the directory ``context_dir`` read in
        place (it is only read, and what .dockerignore excludes stays out of reach).
        ``pull(ref)`` fetches a base image from its registry: for ``--pull``, and for a
        base the store lacks (without it, such a base is an error)."""
        from moorage.build.copy import resolve_in
        from moorage.build.dockerignore import load_matcher

        if request.platform and request.platform.split("/")[0] != "linux":
            raise InvalidArgument(f'platform "{request.platform}": only linux is supported')
        work = tempfile.mkdtemp(prefix="build-", dir=os.path.join(self.root, "work"))
        try:
            in_place = context_dir is not None
            if context_dir is None:
                assert context is not None
                context_dir = os.path.join(work, "context")
                os.mkdir(context_dir, 0o700)
                _mount_context_tmpfs(context_dir, _size_of(context))
                self._extract_context(context, context_dir)
            dockerfile = os.path.normpath(request.dockerfile or "Dockerfile")
            if dockerfile.startswith("..") or os.path.isabs(dockerfile):
                raise InvalidArgument(f"dockerfile {request.dockerfile}: outside the context")
            try:
                with open(resolve_in(context_dir, dockerfile), "rb") as f:
                    text = f.read()
            except (NotFound, FileNotFoundError, IsADirectoryError):
                raise InvalidArgument(
                    f"Cannot locate specified Dockerfile: {request.dockerfile}"
                ) from None
            ignore = load_matcher(Path(context_dir), Path(context_dir, dockerfile))
            options = BuildOptions(
                dockerfile=os.path.basename(dockerfile),
                target=request.target,
                build_args={k: v for k, v in request.build_args.items() if v is not None},
                labels=dict(request.labels),
                no_cache=request.no_cache,
                pull=request.pull,
                network=request.network_mode or "default",
                secrets=dict(request.secrets),
            )
            with self.images.leases.lease(labels={"moorage.build": "1"}) as lease:
                backend = _Backend(self, work, lease, pull)
                executor = Executor(
                    backend,
                    self.cache,
                    context_dir,
                    emit,
                    ignore,
                    scratch=work,
                    context_in_place=in_place,
                )
                state = executor.build(text, options)
                stored = [self._stored(layer) for layer in state.layers]
                image_id = self.images.store_built(state.config, stored, request.tags)
        finally:
            _unmount_context(os.path.join(work, "context"))
            shutil.rmtree(work, ignore_errors=True)
        emit({"aux": {"ID": image_id}})
        emit({"stream": f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n"})
        for tag in request.tags:
            emit({"stream": f"Successfully tagged {tag}\n"})
        return str(image_id)

    def _stored(self, layer: Layer) -> Any:
        from moorage.engine import formats

        labels = self.images.content.info(layer.descriptor.digest).labels
        size = int(labels.get("moorage.uncompressed.size", layer.descriptor.size))
        return formats.StoredLayer(layer.descriptor, layer.diff_id, size)

    def _extract_context(self, context: BinaryIO, target: str) -> None:
        from moorage.store.archive_apply import extract_files
        from moorage.store.compression import LayerStream

        stream = LayerStream(context)
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            extract_files(stream.uncompressed(), fd, owner=(0, 0), private=True)
        finally:
            os.close(fd)

    def prune(
        self, *, all: bool = False, filters: Mapping[str, list[str]] | None = None
    ) -> dict[str, Any]:
        from moorage.engine.logs import parse_time_filter

        until = None
        for value in (filters or {}).get("until", []):
            until = parse_time_filter(value, time.time())
        removed = self.cache.prune(until=until)
        freed = self.images.collect_garbage()
        mounts = os.path.join(self.root, "cache-mounts")
        if until is None and os.path.isdir(mounts):  # RUN --mount=type=cache contents
            for name in os.listdir(mounts):
                freed += _tree_size(os.path.join(mounts, name))
                removed.append(f"cache-mount:{name}")
                shutil.rmtree(os.path.join(mounts, name), ignore_errors=True)
        return {"CachesDeleted": removed or None, "SpaceReclaimed": freed}

    # --- a RUN step ------------------------------------------------------------------------

    def run_step(
        self, rootfs: str, process: RunProcess, output: Callable[[bytes], None], work: str
    ) -> int:
        """Run ``process`` in ``rootfs`` as a container under a monitor; its exit code."""
        from moorage.engine import monitor_client
        from moorage.engine.logs import read_logs
        from moorage.engine.monitor import read_state

        step_id = secrets.token_hex(32)
        directory = tempfile.mkdtemp(prefix="step-", dir=work)
        bundle = os.path.join(directory, "bundle")
        os.mkdir(bundle)
        created = self._place_files(rootfs, process, directory)
        spec = self._spec(rootfs, process, step_id, directory)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        sock = os.path.join(self.containers.socket_dir, f"b{step_id[:31]}.sock")
        task = {
            "id": step_id,
            "bundle": bundle,
            "runtime_root": self.containers.runtime_root,
            "log_path": os.path.join(directory, "log.json"),
            "log_opts": {},
            "socket": sock,
            "tty": False,
            "open_stdin": False,
            "stdin_once": False,
            "rootfs_mount": None,
        }
        network = process.network if process.network in ("host", "none") else "default"
        try:
            if network == "default":
                from moorage.engine.network.service import ContainerNetworking

                self.networks.prepare(ContainerNetworking(id=step_id, name="", mode="bridge"))
            monitor_pid = monitor_client.launch(
                directory, task, zygote=self.containers._monitor_zygote
            )
            try:
                if network == "default":
                    pid = int((read_state(directory) or {}).get("pid") or 0)
                    self.networks.wire(step_id, f"/proc/{pid}/ns/net")
                monitor_client.MonitorClient(sock).start()
                pidfd = os.pidfd_open(monitor_pid)
                try:
                    exited = lambda: bool(select.select([pidfd], [], [], 0)[0])  # noqa: E731
                    for line in read_logs(task["log_path"], follow=True, stop=exited):
                        output(line.data)
                    select.select([pidfd], [], [])
                finally:
                    os.close(pidfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.kill(monitor_pid, 9)
                raise
            state = read_state(directory) or {}
            return int(state.get("exit_code", 255))
        finally:
            if network == "default":
                self.networks.release(step_id)
            self._remove_files(rootfs, created)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)

    def _spec(
        self, rootfs: str, process: RunProcess, step_id: str, directory: str
    ) -> dict[str, Any]:
        from moorage.engine.etcfiles import hosts_file, lookup_user, resolv_conf
        from moorage.oci.default_spec import default_spec

        spec = default_spec(args=list(process.argv), terminal=False)
        spec["root"] = {"path": rootfs, "readonly": False}
        spec["hostname"] = "moorage-build"
        spec["process"]["env"] = list(process.env)
        spec["process"]["cwd"] = process.cwd
        uid, gid, groups = lookup_user(rootfs, process.user or "0")
        spec["process"]["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
        spec["linux"]["cgroupsPath"] = f"{self.containers.cgroup_parent}/build-{step_id[:24]}"
        if process.network == "host":
            spec["linux"]["namespaces"] = [
                ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"
            ]
        try:
            with open("/etc/resolv.conf") as f:
                host_resolv = f.read()
        except OSError:
            host_resolv = ""
        etc = {
            "hosts": hosts_file("moorage-build"),
            "resolv.conf": resolv_conf(host_resolv, list(self.networks.dns), [], []),
        }
        for name, text in etc.items():
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write(text)
            spec["mounts"].append(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": path,
                    "options": ["rbind", "ro"],
                }
            )
        for target, (host, readonly) in process.binds.items():
            spec["mounts"].append(
                {
                    "destination": target,
                    "type": "bind",
                    "source": host,
                    "options": ["rbind", "ro" if readonly else "rw"],
                }
            )
        for target, size in process.tmpfs.items():
            options = ["nosuid", "nodev", "mode=1777"] + ([f"size={size}"] if size else [])
            spec["mounts"].append(
                {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options}
            )
        for target in process.files:
            spec["mounts"].append(
                {
                    "destination": target,
                    "type": "bind",
                    "source": os.path.join(directory, "files", target.lstrip("/")),
                    "options": ["rbind", "ro"],
                }
            )
        return spec

    @staticmethod
    def _place_files(rootfs: str, process: RunProcess, directory: str) -> list[str]:
        """Write the step's own files (secrets, scripts) beside the bundle; return the
        mount points (paths in the root) that had to be made for them, to be removed
        after the step: a secret never leaves a trace in the layer."""
        made: list[str] = []
        for target, (data, mode) in process.files.items():
            source = os.path.join(directory, "files", target.lstrip("/"))
            os.makedirs(os.path.dirname(source), mode=0o700, exist_ok=True)
            with open(source, "wb") as f:
                f.write(data)
            os.chmod(source, mode)
        for target in [*process.files, *process.binds, *process.tmpfs]:
            parts = [p for p in target.split("/") if p]
            for i in range(1, len(parts) + 1):
                if not _exists_in_root(rootfs, "/".join(parts[:i])):
                    made.append("/".join(parts[:i]))
        return made

    @staticmethod
    def _remove_files(rootfs: str, made: list[str]) -> None:
        """Remove the mount points :meth:`_place_files` made, resolving every path inside
        the root: the step may have replaced a directory with a symlink out of it."""
        root = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for path in sorted(made, key=len, reverse=True):
                parent, name = os.path.split(path)
                try:
                    fd = libc.openat2(
                        root,
                        parent or ".",
                        os.O_PATH | os.O_DIRECTORY,
                        _IN_ROOT,
                    )
                except OSError:
                    continue
                try:
                    try:
                        os.rmdir(name, dir_fd=fd)
                    except NotADirectoryError:
                        os.unlink(name, dir_fd=fd)
                except OSError:
                    pass
                finally:
                    os.close(fd)
        finally:
            os.close(root)


# Contexts up to this size are unpacked into a tmpfs: a context is thousands of small
# files written once and read once or twice, and on a busy disk each create costs
# 0.2-0.5 ms (a 2,000-file context: about 1 s) where tmpfs takes ~10 us. Larger ones
# go to the disk, as Docker's classic builder puts them.
_TMPFS_CONTEXT_MAX = 256 * 1024 * 1024


def _size_of(stream: BinaryIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size - stream.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _mount_context_tmpfs(directory: str, size: int | None) -> None:
    if size is None or size > _TMPFS_CONTEXT_MAX:
        return
    limit = size + size // 4 + (16 << 20)  # the files, their inodes, some slack
    with contextlib.suppress(OSError):  # no tmpfs: the disk will do
        flags = libc.MS_NOSUID | libc.MS_NODEV
        libc.mount("tmpfs", directory, "tmpfs", flags, f"mode=0700,size={limit}")


def _unmount_context(directory: str) -> None:
    with contextlib.suppress(OSError):
        libc.umount2(directory, libc.MNT_DETACH)


def _tree_size(top: str) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _exists_in_root(rootfs: str, path: str) -> bool:
    root = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = libc.openat2(root, path, os.O_PATH | os.O_NOFOLLOW, _IN_ROOT)
    except OSError:
        return False
    finally:
        os.close(root)
    os.close(fd)
    return True
