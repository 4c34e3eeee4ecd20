"""The images service: names, manifests and configs over the content store.

An image is a name in the metadata DB pointing at a manifest (or an index) in the
content store; its id, as Docker shows it, is the digest of its config. Layers
are unpacked once into snapshots named by their chain id, shared by every image
that has them. Everything that writes blobs does so under a lease, so a crash
half-way leaves only garbage that the collector removes, never a broken image.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from moorage.engine import formats
from moorage.engine.changes import apply_changes
from moorage.errors import Conflict, InvalidArgument, MoorageError, NotFound
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import Digest, parse_digest
from moorage.oci.image import (
    ContainerConfig,
    History,
    ImageConfig,
    Manifest,
    RootFS,
    chain_ids,
    parse_any,
    parse_image_config,
    referenced_digests,
)
from moorage.oci.platform import host_platform, select_manifest
from moorage.oci.reference import Reference, parse_reference
from moorage.store import archive, gc
from moorage.store.content import ContentStore
from moorage.store.leases import Leases
from moorage.store.metadata import ImageRecord, MetadataDB
from moorage.store.snapshots import mounted, new_snapshotter

if TYPE_CHECKING:
    from moorage.engine.image_transfer import PullOutcome, PushItem, Transfers
    from moorage.registry.client.push import PushResult

log = logging.getLogger(__name__)

# A content label on a compressed layer blob: its uncompressed size, known once the
# layer has been hashed; `save` needs it to write the tar header before the data.
UNCOMPRESSED_SIZE = "moorage.uncompressed.size"
DANGLING_PREFIX = "sha256:"  # an untagged image is recorded under its manifest digest
# The engine's leases carry this label; see ImageService._drop_stale_leases.
ENGINE_LEASE_KEY = "moorage.lease.owner"
ENGINE_LEASE = {ENGINE_LEASE_KEY: "engine"}


class Resolved(NamedTuple):
    """An image as the service works with it."""

    records: tuple[ImageRecord, ...]  # every name that points at this image
    manifest_digest: Digest
    manifest: Manifest
    config_digest: Digest
    config: ImageConfig

    @property
    def id(self) -> str:
        return str(self.config_digest)


class ImageService:
    def __init__(self, root: str, *, insecure_registries: Sequence[str] = ()) -> None:
        self.root = root
        self.insecure_registries = tuple(insecure_registries)
        self._transfers: Transfers | None = None  # made on first use
        os.makedirs(root, mode=0o711, exist_ok=True)
        self.db = MetadataDB(os.path.join(root, "metadata.db"))
        self.content = ContentStore(root, db=self.db)
        self.leases = Leases(self.db)
        self.snapshots = new_snapshotter(root, "auto")
        self.snapshotter_name = self.snapshots.name
        self._drop_stale_leases()

    def _drop_stale_leases(self) -> None:
        """Leases left by an engine that died mid-operation protect only garbage.

        One engine owns a store, and nothing of this one is in flight while it
        opens: every engine lease found now belongs to a predecessor.
        """
        for lease in self.leases.list_leases():
            if lease.labels.get(ENGINE_LEASE_KEY) == ENGINE_LEASE[ENGINE_LEASE_KEY]:
                self.leases.delete(lease)

    def close(self) -> None:
        self.snapshots.close()
        self.db.close()

    # --- registries (engine/image_transfer.py) -----------------------------------------

    @property
    def transfers(self) -> Transfers:
        if self._transfers is None:
            from moorage.engine.image_transfer import Transfers

            self._transfers = Transfers(self, self.insecure_registries)
        return self._transfers

    async def pull(self, reference: str, **options: Any) -> PullOutcome:
        """``docker pull``; see :meth:`image_transfer.Transfers.pull`."""
        return await self.transfers.pull(reference, **options)

    async def push(self, item: PushItem, **options: Any) -> PushResult:
        """One tag of a ``docker push``; see :meth:`image_transfer.Transfers.push`."""
        return await self.transfers.push(item, **options)

    # --- resolving names ---------------------------------------------------------

    def _manifest_of(self, record: ImageRecord) -> tuple[Digest, Manifest]:
        digest = parse_digest(record.digest)
        doc = parse_any(self.content.read_blob(digest), record.media_type)
        if isinstance(doc, Manifest):
            return digest, doc
        chosen = select_manifest(doc.manifests, host_platform())
        manifest = parse_any(self.content.read_blob(chosen.digest), chosen.media_type)
        if not isinstance(manifest, Manifest):
            raise InvalidArgument(f"{record.name}: index entry {chosen.digest} is not a manifest")
        return chosen.digest, manifest

    def _resolve_record(self, record: ImageRecord, all_records: list[ImageRecord]) -> Resolved:
        manifest_digest, manifest = self._manifest_of(record)
        config = parse_image_config(self.content.read_blob(manifest.config.digest))
        same = tuple(r for r in all_records if r.digest == record.digest)
        return Resolved(
            same or (record,), manifest_digest, manifest, manifest.config.digest, config
        )

    def resolve(self, name: str) -> Resolved:
        """An image by name (``busybox``, ``host:5000/a/b:tag``, ``name@digest``) or id prefix."""
        records = self.db.list_images()
        wanted = _canonical(name)
        if wanted is not None:
            for record in records:
                if record.name == wanted:
                    return self._resolve_record(record, records)
            by_digest = self._by_repo_digest(name, records)
            if by_digest is not None:
                return by_digest
        matches = self._by_id_prefix(name, records)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise Conflict(f"ambiguous image id prefix: {name}")
        raise NotFound(f"No such image: {name}")

    def _by_repo_digest(self, name: str, records: list[ImageRecord]) -> Resolved | None:
        """``repo@sha256:...``: a record of that repository whose target has that digest."""
        ref = parse_reference(name)
        if ref.digest is None:
            return None
        for record in records:
            if record.digest == str(ref.digest) and _repository_of(record.name) == ref.name:
                return self._resolve_record(record, records)
        return None

    def _by_id_prefix(self, name: str, records: list[ImageRecord]) -> list[Resolved]:
        prefix = name.removeprefix("sha256:")
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            return []
        found: dict[str, Resolved] = {}
        for record in records:
            try:
                image = self._resolve_record(record, records)
            except MoorageError:
                continue
            if image.config_digest.hex.startswith(prefix):
                found[image.id] = image
        return list(found.values())

    def images(self) -> list[Resolved]:
        records = self.db.list_images()
        seen: dict[str, Resolved] = {}
        for record in records:
            if record.digest in seen:
                continue
            try:
                seen[record.digest] = self._resolve_record(record, records)
            except MoorageError as exc:
                log.warning("image %s is unreadable: %s", record.name, exc)
        return list(seen.values())

    def check_exist(self, names: list[str]) -> None:
        for name in names:
            self.resolve(name)

    # --- Docker-shaped views ---------------------------------------------------------

    def _size(self, image: Resolved) -> int:
        total = 0
        for layer in image.manifest.layers:
            labels = self._labels(layer.digest)
            total += int(labels.get(UNCOMPRESSED_SIZE, layer.size))
        return total

    def _labels(self, digest: Digest) -> dict[str, str]:
        try:
            return dict(self.content.info(digest).labels)
        except NotFound:
            return {}

    def summary(self, image: Resolved) -> dict[str, Any]:
        tags = sorted(
            _familiar(r.name) for r in image.records if not _dangling(r.name) and "@" not in r.name
        )
        digests = sorted(
            f"{_repo(r.name)}@{r.digest}" for r in image.records if not _dangling(r.name)
        )
        config = image.config
        return {
            "Id": image.id,
            "ParentId": "",
            "RepoTags": tags,
            "RepoDigests": digests,
            "Created": _unix(config.created),
            "Size": self._size(image),
            "SharedSize": -1,
            "VirtualSize": self._size(image),
            "Labels": dict(config.config.labels) if config.config else {},
            "Containers": -1,
        }

    def list_images(
        self, *, all_images: bool = False, filters: dict[str, list[str]] | None = None
    ) -> list[dict[str, Any]]:
        out = [self.summary(image) for image in self.images()]
        for key, values in (filters or {}).items():
            if key == "dangling":
                want = values[0] in ("true", "1")
                out = [s for s in out if (not s["RepoTags"]) == want]
            elif key == "reference":
                # Docker lists only the names that match: `docker images foo` shows an
                # image tagged foo:1 and bar:2 once, as foo:1.
                out = [
                    {
                        **s,
                        "RepoTags": [t for t in s["RepoTags"] if _matches(t, values)],
                        "RepoDigests": [
                            d for d in s["RepoDigests"] if _matches(d.split("@")[0], values)
                        ],
                    }
                    for s in out
                ]
                out = [s for s in out if s["RepoTags"] or s["RepoDigests"]]
            elif key == "label":
                out = [s for s in out if all(_has_label(s["Labels"], v) for v in values)]
            else:
                raise InvalidArgument(f"invalid filter: {key}")
        return sorted(out, key=lambda s: -int(s["Created"]))

    def inspect(self, name: str) -> dict[str, Any]:
        image = self.resolve(name)
        summary = self.summary(image)
        config = image.config
        return {
            "Id": image.id,
            "RepoTags": summary["RepoTags"],
            "RepoDigests": summary["RepoDigests"],
            "Parent": "",
            "Comment": config.history[-1].comment if config.history else "",
            "Created": config.created or "",
            "DockerVersion": "",
            "Author": config.author or "",
            "Config": formats.docker_container_config(config.config),
            "Architecture": config.architecture,
            "Variant": config.variant or "",
            "Os": config.os,
            "Size": summary["Size"],
            "GraphDriver": {"Name": self.snapshotter_name, "Data": None},
            "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.rootfs.diff_ids]},
            # A time, never "" (clients parse it); Docker's zero time when not tagged.
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
            "Descriptor": {
                "mediaType": image.records[0].media_type,
                "digest": image.records[0].digest,
                "size": image.records[0].size,
            },
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        image = self.resolve(name)
        sizes = [
            int(self._labels(layer.digest).get(UNCOMPRESSED_SIZE, layer.size))
            for layer in image.manifest.layers
        ]
        rows: list[dict[str, Any]] = []
        layer = 0
        history = image.config.history or tuple(
            History(created=image.config.created, created_by="", comment="")
            for _ in image.manifest.layers
        )
        for entry in history:
            size = 0
            if not entry.empty_layer and layer < len(sizes):
                size = sizes[layer]
                layer += 1
            rows.append(
                {
                    "Id": "<missing>",
                    "Created": _unix(entry.created),
                    "CreatedBy": entry.created_by or "",
                    "Tags": None,
                    "Size": size,
                    "Comment": entry.comment or "",
                }
            )
        rows.reverse()
        if rows:
            rows[0]["Id"] = image.id
            rows[0]["Tags"] = self.summary(image)["RepoTags"] or None
        return rows

    # --- names -------------------------------------------------------------------

    def tag(self, source: str, repo: str, tag: str | None) -> str:
        image = self.resolve(source)
        ref = parse_reference(f"{repo}:{tag}" if tag else repo)
        if ref.digest is not None:
            raise InvalidArgument(f"tag: refusing to create a tag with a digest: {repo}")
        record = image.records[0]
        now = datetime.now(UTC)
        self._name(
            ImageRecord(str(ref), record.media_type, record.digest, record.size, now, now, {})
        )
        return ref.familiar()

    def set_name(self, record: ImageRecord) -> None:
        self._name(record)

    def _name(self, record: ImageRecord) -> None:
        """Give ``record.name`` to ``record``'s image. The image that had the name keeps
        living as an untagged (dangling) image when that was its last name, as Docker
        leaves it after a tag, commit, load or pull onto an existing name."""
        try:
            previous = self.db.get_image(record.name)
        except NotFound:
            previous = None
        self.db.put_image(record)
        if previous is None or previous.digest == record.digest:
            return
        others = [r for r in self.db.list_images() if r.digest == previous.digest]
        if not others:
            self.db.put_image(previous._replace(name=previous.digest))

    def remove(
        self,
        name: str,
        *,
        force: bool = False,
        prune: bool = True,
        in_use: Callable[[str], list[str]] | None = None,
    ) -> list[dict[str, str]]:
        """``rmi``. ``in_use(image_id)`` names the containers that use an image: removing
        its last name is then a Conflict, or with ``force`` leaves it untagged, as Docker."""
        image = self.resolve(name)
        wanted = _canonical(name)
        by_name = [r for r in image.records if r.name == wanted]
        users = in_use(image.id) if in_use is not None else []
        last_name = not by_name or len(image.records) == 1
        if users and last_name and not force:
            raise Conflict(
                f'conflict: unable to remove repository reference "{name}" (must force) - '
                f"container {users[0][:12]} is using its referenced image "
                f"{image.id.removeprefix('sha256:')[:12]}"
            )
        deleted: list[dict[str, str]] = []
        if by_name:
            self.db.delete_image(by_name[0].name)
            deleted.append({"Untagged": _familiar(by_name[0].name)})
            remaining = [r for r in image.records if r.name != by_name[0].name]
        else:
            tagged = [r for r in image.records if not _dangling(r.name)]
            if len(tagged) > 1 and not force:
                raise Conflict(
                    f"unable to delete {name} (must be forced) - image is referenced in "
                    "multiple repositories"
                )
            for record in image.records:
                self.db.delete_image(record.name)
                if not _dangling(record.name):
                    deleted.append({"Untagged": _familiar(record.name)})
            remaining = []
        if not remaining and users:
            # A container still needs it: keep it as an untagged image.
            record = image.records[0]
            self.db.put_image(record._replace(name=record.digest))
        elif not remaining:
            deleted.append({"Deleted": image.id})
            if prune:
                self.collect_garbage()
        return deleted

    def prune(self, *, all_images: bool = False) -> dict[str, Any]:
        removed: list[dict[str, str]] = []
        for image in self.images():
            dangling = all(_dangling(r.name) for r in image.records)
            if dangling or all_images:
                for record in image.records:
                    self.db.delete_image(record.name)
                    if not _dangling(record.name):
                        removed.append({"Untagged": _familiar(record.name)})
                removed.append({"Deleted": image.id})
        freed = self.collect_garbage() if removed else 0
        return {"ImagesDeleted": removed or None, "SpaceReclaimed": freed}

    def collect_garbage(self, ingest_max_age: timedelta = timedelta(hours=24)) -> int:
        """Remove what no image, lease or root holds; partial writes older than the age.

        Partial writes are kept for a while so an interrupted transfer can resume.
        """
        result = gc.collect(
            self.db,
            self.content,
            references=referenced_digests_of,
            snapshots=self.snapshots,
            snapshot_roots_of=self._snapshot_roots,
            ingest_max_age=ingest_max_age,
        )
        return int(result.bytes_freed)

    def _snapshot_roots(self, record: ImageRecord, read_blob: Any) -> list[str]:
        try:
            _, manifest = self._manifest_of(record)
            config = parse_image_config(read_blob(manifest.config.digest))
        except MoorageError:
            return []
        return [str(c) for c in chain_ids(list(config.rootfs.diff_ids))]

    # --- unpacking -----------------------------------------------------------------

    def unpack(self, image: Resolved) -> str:
        """Make sure every layer is a committed snapshot; return the top chain id."""
        return self.unpack_layers(image.manifest.layers, image.config.rootfs.diff_ids, image.id)

    def unpack_layers(
        self, layers: Sequence[Descriptor], diff_ids: Sequence[Digest], what: str = "image"
    ) -> str:
        """Make sure every layer is a committed snapshot; return the top chain id.

        On overlay, the missing layers are extracted in parallel into private
        staging directories (a layer's upper dir does not depend on its parents'
        content) and then handed to their snapshots in chain order. Writing and
        hashing release the GIL, so this uses every core.
        """
        diff_ids = list(diff_ids)
        if len(diff_ids) != len(layers):
            raise InvalidArgument(f"{what}: {len(layers)} layers but {len(diff_ids)} diff_ids")
        plan: list[tuple[Descriptor, Digest, str, str | None]] = []
        parent: str | None = None
        for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
            if not self.has_snapshot(str(chain)):
                plan.append((layer, diff_id, str(chain), parent))
            parent = str(chain)
        if len(plan) > 1 and self.snapshots.whiteout_mode == "overlay":
            self._unpack_staged(plan)
        else:
            for layer, diff_id, chain_id, layer_parent in plan:
                self._unpack_layer(layer, diff_id, chain_id, layer_parent)
        return parent or ""

    def _unpack_staged(self, plan: list[tuple[Descriptor, Digest, str, str | None]]) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        staging = os.path.join(self.root, "staging")
        os.makedirs(staging, mode=0o700, exist_ok=True)  # private: set-id bits may stay
        workers = min(len(plan), os.cpu_count() or 1, 4)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unpack") as pool:
            dirs = [tempfile.mkdtemp(prefix="layer-", dir=staging) for _ in plan]
            futures: list[Future[archive.LayerStream]] = [
                pool.submit(self._extract, layer, target, "overlay")
                for (layer, _, _, _), target in zip(plan, dirs, strict=True)
            ]
            try:
                for (layer, diff_id, chain, parent), future, target in zip(
                    plan, futures, dirs, strict=True
                ):
                    try:
                        stream = future.result()
                    except archive.LinkBelowLayer:
                        self._unpack_layer(layer, diff_id, chain, parent)  # parent is in place
                        continue
                    self._check_diff_id(layer, diff_id, stream)
                    self._adopt(target, chain, parent)
                    self.content.set_labels(
                        layer.digest, {UNCOMPRESSED_SIZE: str(stream.uncompressed_size)}
                    )
            finally:
                for future in futures:
                    future.cancel()
                pool.shutdown(wait=True)
                for target in dirs:
                    shutil.rmtree(target, ignore_errors=True)

    def _adopt(self, staged: str, chain: str, parent: str | None) -> None:
        """Make an extracted directory the upper dir of a new snapshot, and commit it."""
        key = f"extract-{uuid.uuid4().hex} {chain}"
        self.snapshots.prepare(key, parent)
        try:
            upper = self.snapshots.writable_dir(key)
            os.rmdir(upper)  # empty: prepare made it
            os.rename(staged, upper)
            self.snapshots.commit(chain, key)
        except BaseException:
            self.snapshots.remove(key)
            raise

    @staticmethod
    def _check_diff_id(layer: Descriptor, diff_id: Digest, stream: archive.LayerStream) -> None:
        if stream.diff_id != diff_id:
            raise InvalidArgument(
                f"layer {layer.digest}: content does not match its diff_id: "
                f"expected {diff_id}, got {stream.diff_id}"
            )

    def has_snapshot(self, key: str) -> bool:
        try:
            return bool(self.snapshots.stat(key).kind == "committed")
        except NotFound:
            return False

    def _unpack_layer(
        self, layer: Descriptor, diff_id: Digest, chain: str, parent: str | None
    ) -> None:
        """Extract one layer into a new snapshot, committed as ``chain`` once verified."""
        key = f"extract-{uuid.uuid4().hex} {chain}"
        mounts = self.snapshots.prepare(key, parent)
        try:
            try:
                stream = self._extract(
                    layer, self.snapshots.writable_dir(key), self.snapshots.whiteout_mode
                )
            except archive.LinkBelowLayer:
                # A hardlink into a lower layer: start again through the mounted
                # overlay, where the kernel resolves it (slower, so not the default).
                self.snapshots.remove(key)
                mounts = self.snapshots.prepare(key, parent)
                with mounted(mounts) as target:
                    stream = self._extract(layer, target, "delete")
            self._check_diff_id(layer, diff_id, stream)
            self.snapshots.commit(chain, key)
        except BaseException:
            self.snapshots.remove(key)
            raise
        self.content.set_labels(layer.digest, {UNCOMPRESSED_SIZE: str(stream.uncompressed_size)})

    def _extract(self, layer: Descriptor, target: str, whiteouts: Any) -> archive.LayerStream:
        with self.content.reader(layer.digest) as raw:
            stream = archive.LayerStream(raw)
            archive.apply_layer(stream.uncompressed(), target, whiteouts=whiteouts)
            stream.drain()
        return stream

    # --- import, load, save ------------------------------------------------------------

    def import_rootfs(
        self,
        source: IO[bytes],
        *,
        repo: str | None = None,
        tag: str | None = None,
        message: str = "",
        changes: list[str] | None = None,
    ) -> str:
        """A root filesystem tarball (optionally compressed) becomes a one-layer image."""
        ref = parse_reference(f"{repo}:{tag}" if repo and tag else repo) if repo else None
        with self.leases.lease(labels=ENGINE_LEASE) as lease:
            layer = formats.store_layer(self.content, source, lease=lease, leases=self.leases)
            created = formats.now()
            config = ImageConfig(
                created=created,
                author=None,
                architecture=host_platform().architecture,
                os="linux",
                variant=host_platform().variant,
                config=apply_changes(ContainerConfig(), changes or []),
                rootfs=RootFS("layers", (layer.diff_id,)),
                history=(
                    History(
                        created=created,
                        created_by="moor import",
                        comment=message or "Imported from -",
                    ),
                ),
            )
            image = formats.store_image(
                self.content, config, [layer], lease=lease, leases=self.leases
            )
            self.unpack(self._resolve_unnamed(image))
            name = str(ref) if ref else image.manifest_digest
            self._name(image.record(name))
        return str(image.config_digest)

    def commit_layer(
        self,
        parent_id: str,
        layer: IO[bytes] | None,
        *,
        config: ContainerConfig,
        created_by: str = "",
        comment: str = "",
        author: str = "",
        repo: str | None = None,
        tag: str | None = None,
    ) -> str:
        """``docker commit``: image ``parent_id`` plus ``layer`` (a tar, None when the
        container changed nothing) becomes a new image with ``config``; returns its id."""
        ref = parse_reference(f"{repo}:{tag}" if repo and tag else repo) if repo else None
        parent = self.resolve(parent_id)
        base = parent.config
        layers = [
            formats.StoredLayer(
                _oci_layer(d), diff_id, int(self._labels(d.digest).get(UNCOMPRESSED_SIZE, 0))
            )
            for d, diff_id in zip(parent.manifest.layers, base.rootfs.diff_ids, strict=True)
        ]
        with self.leases.lease(labels=ENGINE_LEASE) as lease:
            for stored in layers:
                self.leases.add_resource(lease, "content", str(stored.descriptor.digest))
            if layer is not None:
                layers.append(
                    formats.store_layer(self.content, layer, lease=lease, leases=self.leases)
                )
            created = formats.now()
            history = History(
                created=created,
                created_by=created_by,
                author=author or None,
                comment=comment or None,
                empty_layer=layer is None,
            )
            image = formats.store_image(
                self.content,
                base._replace(
                    created=created,
                    author=author or None,
                    config=config,
                    rootfs=RootFS("layers", tuple(s.diff_id for s in layers)),
                    history=(*base.history, history),
                ),
                layers,
                lease=lease,
                leases=self.leases,
            )
            self.unpack(self._resolve_unnamed(image))
            self._name(image.record(str(ref) if ref else str(image.manifest_digest)))
        return str(image.config_digest)

    def store_layer(self, tar: IO[bytes], lease: Any) -> formats.StoredLayer:
        """A layer (an uncompressed tar) into the content store, held by ``lease``."""
        return formats.store_layer(self.content, tar, lease=lease, leases=self.leases)

    def store_built(
        self,
        config: ImageConfig,
        layers: Sequence[formats.StoredLayer],
        tags: Sequence[str],
    ) -> str:
        """A built image: its config and manifest stored, named ``tags`` (a dangling
        image when none), its layers unpacked; returns its id."""
        refs = [parse_reference(t) for t in tags]
        with self.leases.lease(labels=ENGINE_LEASE) as lease:
            for stored in layers:
                self.leases.add_resource(lease, "content", str(stored.descriptor.digest))
            image = formats.store_image(
                self.content, config, layers, lease=lease, leases=self.leases
            )
            self.unpack(self._resolve_unnamed(image))
            names = [str(r) for r in refs] or [str(image.manifest_digest)]
            for name in names:
                self._name(image.record(name))
        return str(image.config_digest)

    def _resolve_unnamed(self, image: formats.StoredImage) -> Resolved:
        record = image.record(str(image.manifest_digest))
        return Resolved(
            (record,), image.manifest_digest, image.manifest, image.config_digest, image.config
        )

    def load(self, source: IO[bytes]) -> Iterator[str]:
        """Images from a docker-archive or OCI-layout tar; yields each loaded name."""
        with self.leases.lease(labels=ENGINE_LEASE) as lease:
            loaded = formats.read_archive(self.content, source, lease=lease, leases=self.leases)
            for stored, names in loaded:
                self.unpack(self._resolve_unnamed(stored))
                for name in names or [str(stored.manifest_digest)]:
                    self._name(stored.record(name))
                    yield _familiar(name) if not _dangling(name) else stored.config_digest

    def save(self, names: list[str], fmt: str = "docker") -> Iterator[bytes]:
        images = [(name, self.resolve(name)) for name in names]
        if fmt == "oci":
            return formats.write_oci_layout(self.content, images)
        if fmt != "docker":
            raise InvalidArgument(f"unknown save format: {fmt} (want docker or oci)")
        return formats.write_docker_archive(self.content, images, self._uncompressed_size)

    def _uncompressed_size(self, layer: Descriptor) -> int:
        labels = self._labels(layer.digest)
        if UNCOMPRESSED_SIZE in labels:
            return int(labels[UNCOMPRESSED_SIZE])
        size = formats.measure_uncompressed(self.content, layer)
        self.content.set_labels(layer.digest, {UNCOMPRESSED_SIZE: str(size)})
        return size

    # --- disk usage ------------------------------------------------------------------

    def disk_usage(self) -> dict[str, Any]:
        """``GET /system/df``'s images: their layers counted once, uncompressed (what
        ``images`` shows as sizes), and each image's SharedSize, the layers it shares
        with another image."""
        layer_size: dict[str, int] = {}
        layers_of: dict[str, set[str]] = {}
        for image in self.images():
            for layer in image.manifest.layers:
                labels = self._labels(layer.digest)
                layer_size[str(layer.digest)] = int(labels.get(UNCOMPRESSED_SIZE, layer.size))
            layers_of.setdefault(image.id, set()).update(
                str(x.digest) for x in image.manifest.layers
            )
        users = collections.Counter(d for digests in layers_of.values() for d in digests)
        summaries = self.list_images(all_images=True)
        for s in summaries:
            s["Containers"] = 0
            mine = layers_of.get(s["Id"], set())
            s["SharedSize"] = sum(layer_size[d] for d in mine if users[d] > 1)
        return {
            "LayersSize": sum(layer_size.values()),
            "Images": summaries,
            "Containers": [],
            "Volumes": [],
            "BuildCache": [],
        }


def referenced_digests_of(media_type: str, raw: bytes) -> list[str]:
    return [str(d) for d in referenced_digests(raw, media_type or None)]


def _canonical(name: str) -> str | None:
    try:
        return str(parse_reference(name))
    except InvalidArgument:
        return None


def _repository_of(name: str) -> str | None:
    try:
        return parse_reference(name).name
    except InvalidArgument:
        return None


def _dangling(name: str) -> bool:
    return name.startswith(DANGLING_PREFIX)


def _familiar(name: str) -> str:
    try:
        return parse_reference(name).familiar()
    except InvalidArgument:
        return name


def _repo(name: str) -> str:
    ref: Reference = parse_reference(name)
    return ref.familiar().rsplit(":", 1)[0] if ref.tag else ref.familiar().split("@")[0]


def _matches(tag: str, patterns: list[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(tag, p) or fnmatch.fnmatch(tag.split(":")[0], p) for p in patterns)


def _has_label(labels: dict[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _unix(created: str | None) -> int:
    if not created:
        return 0
    from datetime import datetime

    try:
        text = created.replace("Z", "+00:00")
        if "." in text:  # Python accepts at most microseconds
            head, rest = text.split(".", 1)
            frac, sep, tz = rest.partition("+")
            text = f"{head}.{frac[:6]}{sep}{tz}"
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def _oci_layer(layer: Descriptor) -> Descriptor:
    """A parent's layer in the OCI manifest of a committed image: Docker schema 2 media
    types become their OCI equivalents (same bytes); foreign layers stay as they are."""
    from moorage.oci import mediatypes as mt

    if layer.media_type in (mt.DOCKER_LAYER, mt.DOCKER_LAYER_TAR, mt.DOCKER_LAYER_ZSTD):
        return layer._replace(
            media_type=mt.layer_media_type(mt.layer_compression(layer.media_type))
        )
    return layer
