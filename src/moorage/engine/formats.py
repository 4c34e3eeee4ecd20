"""Image archives in and out: docker-archive and OCI image layout, as tar streams.

``docker save`` (25 and later) writes both at once: an OCI layout (``oci-layout``,
``index.json``, ``blobs/sha256/...``) plus the older ``manifest.json`` that
earlier Docker versions and skopeo read; its layers are uncompressed tars named
by their diff_id. ``moor save`` writes the same. ``moor save --format oci``
writes a pure OCI layout with the blobs exactly as stored, so manifest digests
are preserved. ``load`` reads any of these, streaming every blob into the content
store (verified against its name when it has one) and building an image record
only once every piece it references is present and unpacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple

from moorage.engine import tarstream
from moorage.errors import InvalidArgument
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import Digest, parse_digest
from moorage.oci.image import (
    ContainerConfig,
    ImageConfig,
    Index,
    Manifest,
    config_bytes,
    manifest_bytes,
    parse_any,
    parse_image_config,
)
from moorage.oci.platform import host_platform, select_manifest
from moorage.oci.reference import parse_reference
from moorage.store import archive
from moorage.store.content import ContentStore
from moorage.store.metadata import ImageRecord

if TYPE_CHECKING:
    from moorage.engine.images import Resolved
    from moorage.store.leases import Leases

SMALL_FILE_LIMIT = 4 * 1024 * 1024  # manifest.json, index.json, configs


def now() -> str:
    return tarstream.now_rfc3339()


class StoredLayer(NamedTuple):
    descriptor: Descriptor
    diff_id: Digest
    uncompressed_size: int


class StoredImage(NamedTuple):
    manifest_digest: Digest
    manifest: Manifest
    manifest_size: int
    config_digest: Digest
    config: ImageConfig

    def record(self, name: str) -> ImageRecord:
        t = datetime.now(UTC)
        return ImageRecord(
            name, mt.OCI_MANIFEST, str(self.manifest_digest), self.manifest_size, t, t, {}
        )


def _protect(leases: Leases, lease: Any, digest: str) -> None:
    leases.add_resource(lease, "content", digest)


def store_layer(
    content: ContentStore, source: IO[bytes], *, lease: Any, leases: Leases
) -> StoredLayer:
    """Store a (possibly compressed) tar stream as a gzip layer; hash both forms on the way."""
    stream = archive.LayerStream(source)
    plain = stream.uncompressed()
    ref = f"import-{os.getpid()}-{time.monotonic_ns()}"
    writer = content.writer(ref)
    try:
        with archive.compressor(writer, "gzip") as packed:
            while chunk := plain.read(1024 * 1024):
                packed.write(chunk)
        stream.drain()
        digest = writer.commit()
    except BaseException:
        writer.abort()
        raise
    _protect(leases, lease, digest)
    size = content.info(parse_digest(digest)).size
    content.set_labels(
        parse_digest(digest), {"moorage.uncompressed.size": str(stream.uncompressed_size)}
    )
    return StoredLayer(
        Descriptor(mt.OCI_LAYER_GZIP, parse_digest(digest), size),
        parse_digest(str(stream.diff_id)),
        stream.uncompressed_size,
    )


class LayerSink:
    """Where a layer's uncompressed tar is written as it is made (see
    :func:`layer_sink`): hashed for its diff_id and compressed into the store on the
    way, never spooled whole."""

    def __init__(self, packed: BinaryIO) -> None:
        self._packed = packed
        self._diff = hashlib.sha256()
        self.size = 0
        self.abandoned = False
        self.stored: StoredLayer | None = None

    def write(self, data: bytes) -> int:
        self._diff.update(data)
        self.size += len(data)
        self._packed.write(data)
        return len(data)

    def abandon(self) -> None:
        """Keep nothing of what was written (the layer turned out empty)."""
        self.abandoned = True

    @property
    def diff_id(self) -> Digest:
        return parse_digest("sha256:" + self._diff.hexdigest())


@contextlib.contextmanager
def layer_sink(content: ContentStore, *, lease: Any, leases: Leases) -> Iterator[LayerSink]:
    """A layer written as a tar stream, stored as a gzip blob held by ``lease`` when
    the block ends (``sink.stored``), unless the block raises or abandons it."""
    writer = content.writer(f"import-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with archive.compressor(writer, "gzip") as packed:
            sink = LayerSink(packed)
            yield sink
        if sink.abandoned:
            writer.abort()
            return
        digest = writer.commit()
    except BaseException:
        writer.abort()
        raise
    _protect(leases, lease, digest)
    blob = parse_digest(digest)
    content.set_labels(blob, {"moorage.uncompressed.size": str(sink.size)})
    sink.stored = StoredLayer(
        Descriptor(mt.OCI_LAYER_GZIP, blob, content.info(blob).size), sink.diff_id, sink.size
    )


def _store_bytes(content: ContentStore, data: bytes, lease: Any, leases: Leases) -> Digest:
    digest = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
    # Leased before the check, so that a collection cannot take it in between; a
    # rebuild's config and manifest are usually there already (no write, no fsync).
    _protect(leases, lease, str(digest))
    if not content.exists(str(digest)):
        content.write_blob(data, expected=str(digest))
    return digest


def store_image(
    content: ContentStore,
    config: ImageConfig,
    layers: Sequence[StoredLayer],
    *,
    lease: Any,
    leases: Leases,
) -> StoredImage:
    raw_config = config_bytes(config)
    config_digest = _store_bytes(content, raw_config, lease, leases)
    manifest = Manifest(
        schema_version=2,
        media_type=mt.OCI_MANIFEST,
        config=Descriptor(mt.OCI_CONFIG, config_digest, len(raw_config)),
        layers=tuple(layer.descriptor for layer in layers),
    )
    raw_manifest = manifest_bytes(manifest)
    manifest_digest = _store_bytes(content, raw_manifest, lease, leases)
    return StoredImage(manifest_digest, manifest, len(raw_manifest), config_digest, config)


# --- reading archives -------------------------------------------------------------------


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def read_archive(
    content: ContentStore, source: IO[bytes], *, lease: Any, leases: Leases
) -> list[tuple[StoredImage, list[str]]]:
    """Every image in a docker-archive or OCI-layout tar, with the names it carries."""
    blobs: dict[str, Digest] = {}  # path in the archive -> digest in the store
    links: dict[str, str] = {}
    small: dict[str, bytes] = {}
    try:
        tar = tarfile.open(fileobj=source, mode="r|*")  # noqa: SIM115 - streamed below
    except tarfile.TarError as exc:
        raise InvalidArgument(f"load: not a tar archive: {exc}") from exc
    try:
        for member in tar:
            name = _clean(member.name)
            if member.issym() or member.islnk():
                target = member.linkname
                if member.issym():
                    target = posixpath.join(posixpath.dirname(name), target)
                links[name] = _clean(target)
                continue
            if not member.isfile():
                continue
            data = tar.extractfile(member)
            if data is None:
                continue
            _read_member(content, name, member.size, data, blobs, small, lease, leases)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"load: broken archive: {exc}") from exc
    finally:
        tar.close()
    for alias, target in links.items():
        if target in blobs:
            blobs[alias] = blobs[target]
    if "manifest.json" in small:
        return _from_docker_manifest(content, small["manifest.json"], blobs, lease, leases)
    if "index.json" in small:
        return _from_oci_index(content, small["index.json"], blobs)
    raise InvalidArgument("load: the archive has neither manifest.json nor index.json")


def _read_member(
    content: ContentStore,
    name: str,
    size: int,
    data: IO[bytes],
    blobs: dict[str, Digest],
    small: dict[str, bytes],
    lease: Any,
    leases: Leases,
) -> None:
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        expected = parse_digest(f"{parts[1]}:{parts[2]}")
        digest, _ = content.write_blob(data, expected=str(expected))
        _protect(leases, lease, digest)
        blobs[name] = expected
        return
    if name in ("manifest.json", "index.json", "repositories", "oci-layout") or (
        name.endswith(".json") and "/" not in name
    ):
        if size > SMALL_FILE_LIMIT:
            raise InvalidArgument(f"load: {name} is too large: {size} bytes")
        raw = data.read()
        small[name] = raw
        if name not in ("manifest.json", "index.json", "repositories", "oci-layout"):
            blobs[name] = _store_bytes(content, raw, lease, leases)  # a legacy config
        return
    # Any other file may be a layer: "<id>/layer.tar" (legacy docker), "<hex>.tar"
    # (skopeo). Stored now, streamed; one that no manifest names is garbage later.
    digest, _ = content.write_blob(data)
    _protect(leases, lease, digest)
    blobs[name] = parse_digest(digest)


def _layer_descriptor(content: ContentStore, digest: Digest) -> Descriptor:
    """Describe a layer blob found in an archive from its first bytes: no decompression.

    Its diff_id is checked against the config when it is unpacked, which reads it
    once anyway.
    """
    size = content.info(digest).size
    with content.reader(digest) as raw:
        compression = archive.detect_compression(raw.read(512))
    media_type = {
        None: mt.OCI_LAYER,
        "gzip": mt.OCI_LAYER_GZIP,
        "zstd": mt.OCI_LAYER_ZSTD,
    }[compression]
    return Descriptor(media_type, digest, size)


def _from_docker_manifest(
    content: ContentStore, raw: bytes, blobs: dict[str, Digest], lease: Any, leases: Leases
) -> list[tuple[StoredImage, list[str]]]:
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"load: manifest.json: invalid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise InvalidArgument("load: manifest.json: want a list of images")
    out: list[tuple[StoredImage, list[str]]] = []
    for i, entry in enumerate(entries):
        where = f"manifest.json[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"load: {where}: want an object")
        config_path = _clean(str(entry.get("Config", "")))
        if config_path not in blobs:
            raise InvalidArgument(f"load: {where}: config {config_path!r} is not in the archive")
        config_digest = blobs[config_path]
        raw_config = content.read_blob(config_digest)
        config = parse_image_config(raw_config)
        layers: list[Descriptor] = []
        for layer_path in entry.get("Layers") or []:
            path = _clean(str(layer_path))
            if path not in blobs:
                raise InvalidArgument(f"load: {where}: layer {path!r} is not in the archive")
            layers.append(_layer_descriptor(content, blobs[path]))
        if len(layers) != len(config.rootfs.diff_ids):
            raise InvalidArgument(
                f"load: {where}: {len(layers)} layers but the config lists "
                f"{len(config.rootfs.diff_ids)}"
            )
        manifest = Manifest(
            schema_version=2,
            media_type=mt.OCI_MANIFEST,
            config=Descriptor(mt.OCI_CONFIG, config_digest, len(raw_config)),
            layers=tuple(layers),
        )
        raw_manifest = manifest_bytes(manifest)
        manifest_digest = _store_bytes(content, raw_manifest, lease, leases)
        names = [str(parse_reference(t)) for t in entry.get("RepoTags") or []]
        out.append(
            (
                StoredImage(manifest_digest, manifest, len(raw_manifest), config_digest, config),
                names,
            )
        )
    return out


def _require(content: ContentStore, digest: Digest, what: str) -> None:
    if not content.exists(digest):
        raise InvalidArgument(f"load: {what} {digest} is missing from the archive")


def _from_oci_index(
    content: ContentStore, raw: bytes, blobs: dict[str, Digest]
) -> list[tuple[StoredImage, list[str]]]:
    index = parse_any(raw, mt.OCI_INDEX)
    if not isinstance(index, Index):
        raise InvalidArgument("load: index.json is not an image index")
    out: list[tuple[StoredImage, list[str]]] = []
    for entry in index.manifests:
        _require(content, entry.digest, "manifest")
        doc = parse_any(content.read_blob(entry.digest), entry.media_type)
        descriptor = entry
        if isinstance(doc, Index):
            descriptor = select_manifest(doc.manifests, host_platform())
            _require(content, descriptor.digest, "manifest")
            doc = parse_any(content.read_blob(descriptor.digest), descriptor.media_type)
        if not isinstance(doc, Manifest):
            raise InvalidArgument(f"load: {descriptor.digest} is not an image manifest")
        _require(content, doc.config.digest, "config")
        for layer in doc.layers:
            _require(content, layer.digest, "layer")
        config = parse_image_config(content.read_blob(doc.config.digest))
        name = entry.annotations.get("io.containerd.image.name") or entry.annotations.get(
            "org.opencontainers.image.ref.name"
        )
        names = []
        if name and ("/" in name or ":" in name):
            names.append(str(parse_reference(name)))
        stored = StoredImage(descriptor.digest, doc, descriptor.size, doc.config.digest, config)
        out.append((stored, names))
    return out


# --- writing archives ---------------------------------------------------------------------


def measure_uncompressed(content: ContentStore, layer: Descriptor) -> int:
    with content.reader(layer.digest) as raw:
        stream = archive.LayerStream(raw)
        stream.drain()
    return int(stream.uncompressed_size)


def _blob_member(content: ContentStore, digest: Digest, size: int) -> Iterator[bytes]:
    with content.reader(digest) as source:
        yield from tarstream.member_stream(f"blobs/sha256/{digest.hex}", size, source)


def _names(image: Resolved) -> list[str]:
    return [r.name for r in image.records if not r.name.startswith("sha256:")]


def write_oci_layout(
    content: ContentStore, images: Sequence[tuple[str, Resolved]]
) -> Iterator[bytes]:
    """A pure OCI layout: blobs as stored (digests preserved) and index.json naming them."""
    written: set[str] = set()
    manifests: list[dict[str, Any]] = []
    yield tarstream.directory("blobs")
    yield tarstream.directory("blobs/sha256")
    for requested, image in images:
        blobs = [(image.manifest_digest, content.info(image.manifest_digest).size)]
        blobs.append((image.manifest.config.digest, image.manifest.config.size))
        blobs += [(layer.digest, layer.size) for layer in image.manifest.layers]
        for digest, size in blobs:
            if str(digest) not in written:
                written.add(str(digest))
                yield from _blob_member(content, digest, size)
        name = _reference_name(requested, image)
        annotations = _name_annotations(name)
        manifests.append(
            Descriptor(
                mt.OCI_MANIFEST,
                image.manifest_digest,
                content.info(image.manifest_digest).size,
                annotations=annotations,
            ).to_dict()
        )
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    yield tarstream.member_bytes("index.json", json.dumps(index).encode())
    yield tarstream.member_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    yield tarstream.end()


def _name_annotations(name: str | None) -> dict[str, str]:
    """How an OCI layout names an image: containerd's full name and the OCI tag."""
    if not name:
        return {}
    ref = parse_reference(name)
    return {
        "io.containerd.image.name": str(ref),
        "org.opencontainers.image.ref.name": ref.tag or "latest",
    }


def _reference_name(requested: str, image: Resolved) -> str | None:
    try:
        ref = parse_reference(requested)
    except InvalidArgument:
        ref = None
    if ref is not None and any(r.name == str(ref) for r in image.records):
        return str(ref)
    names = _names(image)
    return names[0] if names else None


def write_docker_archive(
    content: ContentStore,
    images: Sequence[tuple[str, Resolved]],
    uncompressed_size: Callable[[Descriptor], int],
) -> Iterator[bytes]:
    """What ``docker save`` writes: OCI layout with uncompressed layers plus manifest.json."""
    written: set[str] = set()
    entries: list[dict[str, Any]] = []
    manifests: list[dict[str, Any]] = []
    yield tarstream.directory("blobs")
    yield tarstream.directory("blobs/sha256")
    for requested, image in images:
        config_digest = image.manifest.config.digest
        if str(config_digest) not in written:
            written.add(str(config_digest))
            yield from _blob_member(content, config_digest, image.manifest.config.size)
        layer_paths: list[str] = []
        layer_descriptors: list[Descriptor] = []
        for layer, diff_id in zip(image.manifest.layers, image.config.rootfs.diff_ids, strict=True):
            size = uncompressed_size(layer)
            layer_paths.append(f"blobs/sha256/{diff_id.hex}")
            layer_descriptors.append(Descriptor(mt.OCI_LAYER, diff_id, size))
            if str(diff_id) in written:
                continue
            written.add(str(diff_id))
            with content.reader(layer.digest) as raw:
                plain = archive.LayerStream(raw).uncompressed()
                yield from tarstream.member_stream(f"blobs/sha256/{diff_id.hex}", size, plain)
        manifest = Manifest(
            schema_version=2,
            media_type=mt.OCI_MANIFEST,
            config=image.manifest.config._replace(media_type=mt.OCI_CONFIG),
            layers=tuple(layer_descriptors),
        )
        raw_manifest = manifest_bytes(manifest)
        manifest_digest = parse_digest(_sha256(raw_manifest))
        if str(manifest_digest) not in written:
            written.add(str(manifest_digest))
            yield tarstream.member_bytes(f"blobs/sha256/{manifest_digest.hex}", raw_manifest)
        name = _reference_name(requested, image)
        tags = [parse_reference(name).familiar()] if name else []
        entries.append(
            {"Config": f"blobs/sha256/{config_digest.hex}", "RepoTags": tags, "Layers": layer_paths}
        )
        annotations = _name_annotations(name)
        manifests.append(
            Descriptor(
                mt.OCI_MANIFEST, manifest_digest, len(raw_manifest), annotations=annotations
            ).to_dict()
        )
    yield tarstream.member_bytes("manifest.json", json.dumps(entries).encode())
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    yield tarstream.member_bytes("index.json", json.dumps(index).encode())
    yield tarstream.member_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    yield tarstream.end()


def _sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- Docker's view of a container config ---------------------------------------------------


def docker_container_config(config: ContainerConfig | None) -> dict[str, Any]:
    c = config or ContainerConfig()
    health = None
    if c.healthcheck is not None:
        h = c.healthcheck
        health = {
            "Test": list(h.test),
            "Interval": h.interval or 0,
            "Timeout": h.timeout or 0,
            "StartPeriod": h.start_period or 0,
            "Retries": h.retries or 0,
        }
    return {
        "Hostname": "",
        "Domainname": "",
        "User": c.user or "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": {p: {} for p in c.exposed_ports} or None,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": list(c.env) or None,
        "Cmd": list(c.cmd) if c.cmd is not None else None,
        "Healthcheck": health,
        "Image": "",
        "Volumes": {v: {} for v in c.volumes} or None,
        "WorkingDir": c.working_dir or "",
        "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
        "OnBuild": list(c.on_build) or None,
        "Labels": dict(c.labels) or None,
        "StopSignal": c.stop_signal or None,
    }
