"""Image manifests, indexes and image configs: records, parsing and canonical bytes.

This module owns the three JSON documents that make an image, in both dialects Moorage
meets: the OCI image spec and Docker's image manifest v2 schema 2 (whose shapes are the
same apart from media types, so one record type serves both).

Reading (``parse_manifest``, ``parse_index``, ``parse_image_config``, ``parse_any``)
validates what a puller must trust and ignores keys it does not know, so newer documents
still load. Every error is an :class:`InvalidArgument` naming the document and the JSON
path::

    config.json: rootfs.diff_ids[1]: invalid digest "sha256:12"
    manifest.json: layers[0].size: must be at least 0, not -1

Writing (``manifest_bytes``, ``index_bytes``, ``config_bytes``) gives compact JSON with
the keys in the order the specs list them and empty fields left out, as Docker and
BuildKit write them, so the same record always has the same digest. Sets (exposed ports,
volumes) are read and written sorted, maps are written sorted, as Go writes every map.
``parse_manifest(manifest_bytes(m)) == m`` and likewise for the other two.

Conventions of the records: snake_case field names, absent strings ``None``, absent
lists empty tuples, absent maps empty mappings. ``ContainerConfig.entrypoint`` and
``.cmd`` keep ``None`` (not set: inherit) apart from ``()`` (set to nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from moorage.errors import InvalidArgument, NotSupported
from moorage.oci import mediatypes
from moorage.oci._json import Obj, as_digest, decode_object, dumps, put, sorted_map
from moorage.oci._jsonpath import quote
from moorage.oci.descriptor import Descriptor, descriptor_from_obj
from moorage.oci.digest import Digest
from moorage.oci.platform import Platform

__all__ = [
    "MAX_MANIFEST_SIZE",
    "ContainerConfig",
    "Healthcheck",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "RootFS",
    "chain_ids",
    "config_bytes",
    "index_bytes",
    "manifest_bytes",
    "parse_any",
    "parse_image_config",
    "parse_index",
    "parse_manifest",
    "referenced_digests",
]

# What registries accept (distribution and most others refuse a bigger manifest). A cap
# also bounds what one untrusted document can make us allocate while decoding it.
MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024

_EMPTY: Mapping[str, str] = MappingProxyType({})


# --------------------------------------------------------------------------- records


class Manifest(NamedTuple):
    schema_version: int
    media_type: str | None
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = _EMPTY
    subject: Descriptor | None = None
    artifact_type: str | None = None


class Index(NamedTuple):
    """An OCI image index or a Docker manifest list."""

    schema_version: int
    media_type: str | None
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = _EMPTY
    subject: Descriptor | None = None
    artifact_type: str | None = None


class RootFS(NamedTuple):
    type: str = "layers"
    diff_ids: tuple[Digest, ...] = ()


class History(NamedTuple):
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False


class Healthcheck(NamedTuple):
    """Docker's HEALTHCHECK. Durations are nanoseconds; 0 means the default."""

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


class ContainerConfig(NamedTuple):
    """The defaults an image gives its containers (the config's ``config`` object)."""

    user: str | None = None
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    env: tuple[str, ...] = ()  # "KEY=value"
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str | None = None
    labels: Mapping[str, str] = _EMPTY
    stop_signal: str | None = None
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    args_escaped: bool = False
    shell: tuple[str, ...] = ()


class ImageConfig(NamedTuple):
    created: str | None  # RFC 3339, kept as written (Docker writes nanoseconds)
    author: str | None
    architecture: str
    os: str
    variant: str | None
    config: ContainerConfig | None
    rootfs: RootFS
    history: tuple[History, ...] = ()

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)


# --------------------------------------------------------------------------- reading


def _load(raw: bytes, source: str, what: str) -> Obj:
    if len(raw) > MAX_MANIFEST_SIZE:
        raise InvalidArgument(f"{what} too large: {len(raw)} bytes")
    return decode_object(raw, source)


def _schema_version(o: Obj) -> int:
    version = o.integer("schemaVersion")
    if version != 2:
        raise o.member("schemaVersion").fail(f"must be 2, not {version}")
    return version


def _media_type(o: Obj, allowed: frozenset[str], kind: str) -> str | None:
    media_type = o.opt_string("mediaType")
    if media_type is not None and media_type not in allowed:
        # Refusing here is what stops an index from being read as a manifest, or the
        # other way round, when a registry and a client disagree about a blob.
        raise o.member("mediaType").fail(f"not {kind} media type: {quote(media_type)}")
    return media_type


def _opt_descriptor(o: Obj, key: str) -> Descriptor | None:
    child = o.child(key)
    return None if child is None else descriptor_from_obj(child)


_MANIFEST_TYPES = frozenset({mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST})
_INDEX_TYPES = frozenset({mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST})


def parse_manifest(raw: bytes, source: str = "manifest.json") -> Manifest:
    """Validate an image manifest (OCI or Docker schema 2) and return it as a record."""
    return _manifest(_load(raw, source, "manifest"))


def _manifest(o: Obj) -> Manifest:
    return Manifest(
        schema_version=_schema_version(o),
        media_type=_media_type(o, _MANIFEST_TYPES, "a manifest"),
        config=descriptor_from_obj(Obj(o.required("config"), o.member("config"))),
        layers=tuple(descriptor_from_obj(child) for child in _required_list(o, "layers")),
        annotations=o.string_map("annotations"),
        subject=_opt_descriptor(o, "subject"),
        artifact_type=o.opt_string("artifactType"),
    )


def parse_index(raw: bytes, source: str = "index.json") -> Index:
    """Validate an OCI image index or a Docker manifest list."""
    return _index(_load(raw, source, "manifest"))


def _index(o: Obj) -> Index:
    return Index(
        schema_version=_schema_version(o),
        media_type=_media_type(o, _INDEX_TYPES, "an index"),
        manifests=tuple(descriptor_from_obj(child) for child in _required_list(o, "manifests")),
        annotations=o.string_map("annotations"),
        subject=_opt_descriptor(o, "subject"),
        artifact_type=o.opt_string("artifactType"),
    )


def _required_list(o: Obj, key: str) -> list[Obj]:
    o.required(key)  # present, though it may be empty
    return o.children(key)


def parse_any(
    raw: bytes, media_type: str | None = None, source: str = "manifest.json"
) -> Manifest | Index:
    """A manifest or an index, as ``media_type`` says, or as the document says if None.

    Without a media type (a registry that sent none, an OCI layout entry) the document's
    own ``mediaType`` decides, then its shape: ``manifests`` makes an index, ``config``
    or ``layers`` a manifest. A document whose ``mediaType`` differs from ``media_type``
    is refused. Schema 1 and unknown types are :class:`NotSupported`.
    """
    o = _load(raw, source, "manifest")
    declared = o.opt_string("mediaType")
    if media_type is not None and declared is not None and declared != media_type:
        raise o.member("mediaType").fail(f"{quote(declared)} does not match {quote(media_type)}")
    kind = media_type or declared
    if kind is None:
        if o.has("manifests"):
            kind = mediatypes.OCI_INDEX
        elif o.has("config") or o.has("layers"):
            kind = mediatypes.OCI_MANIFEST
        else:
            raise o.at.fail("not a manifest or an index: no mediaType, manifests or layers")
    if kind in _MANIFEST_TYPES:
        return _manifest(o)
    if kind in _INDEX_TYPES:
        return _index(o)
    raise NotSupported(f"unsupported manifest media type: {quote(kind)}")


def parse_image_config(raw: bytes, source: str = "config.json") -> ImageConfig:
    """Validate an image config (OCI or Docker) and return it as a record."""
    o = _load(raw, source, "image config")
    container = o.child("config")
    rootfs = Obj(o.required("rootfs"), o.member("rootfs"))
    return ImageConfig(
        created=o.opt_string("created"),
        author=o.opt_string("author"),
        architecture=o.string("architecture"),
        os=o.string("os"),
        variant=o.opt_string("variant"),
        config=None if container is None else _container_config(container),
        rootfs=_rootfs(rootfs),
        history=tuple(_history(h) for h in o.children("history")),
    )


def _rootfs(o: Obj) -> RootFS:
    kind = o.string("type")
    if kind != "layers":
        raise o.member("type").fail(f'must be "layers", not {quote(kind)}')
    # diff_ids is required by the spec, yet Docker writes null for an image of no layers.
    return RootFS(type=kind, diff_ids=tuple(as_digest(v, at) for v, at in o.items("diff_ids")))


def _history(o: Obj) -> History:
    return History(
        created=o.opt_string("created"),
        created_by=o.opt_string("created_by"),
        author=o.opt_string("author"),
        comment=o.opt_string("comment"),
        empty_layer=o.boolean("empty_layer"),
    )


def _str_slice(o: Obj, key: str) -> tuple[str, ...] | None:
    """Docker's StrSlice: null (absent), a list of strings, or one string."""
    value = o.data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return o.strings(key)


def _container_config(o: Obj) -> ContainerConfig:
    healthcheck = o.child("Healthcheck")
    return ContainerConfig(
        user=o.opt_string("User"),
        # Port and volume keys are kept as written: Docker does not check them when it
        # loads an image either, and the engine validates what it publishes or mounts.
        exposed_ports=o.key_set("ExposedPorts"),
        env=o.strings("Env"),
        entrypoint=_str_slice(o, "Entrypoint"),
        cmd=_str_slice(o, "Cmd"),
        volumes=o.key_set("Volumes"),
        working_dir=o.opt_string("WorkingDir"),
        labels=o.string_map("Labels"),
        stop_signal=o.opt_string("StopSignal"),
        healthcheck=None if healthcheck is None else _healthcheck(healthcheck),
        on_build=o.strings("OnBuild"),
        args_escaped=o.boolean("ArgsEscaped"),
        shell=_str_slice(o, "Shell") or (),
    )


def _healthcheck(o: Obj) -> Healthcheck:
    return Healthcheck(
        test=o.strings("Test"),
        interval=o.opt_integer("Interval"),
        timeout=o.opt_integer("Timeout"),
        start_period=o.opt_integer("StartPeriod"),
        start_interval=o.opt_integer("StartInterval"),
        retries=o.opt_integer("Retries"),
    )


# --------------------------------------------------------------------------- writing


def _descriptors(descriptors: Sequence[Descriptor]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in descriptors]


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical JSON of ``manifest`` (keys in the OCI spec's order)."""
    out: dict[str, Any] = {"schemaVersion": manifest.schema_version}
    put(out, "mediaType", manifest.media_type)
    put(out, "artifactType", manifest.artifact_type)
    out["config"] = manifest.config.to_dict()
    out["layers"] = _descriptors(manifest.layers)
    if manifest.subject is not None:
        out["subject"] = manifest.subject.to_dict()
    put(out, "annotations", sorted_map(manifest.annotations))
    return dumps(out)


def index_bytes(index: Index) -> bytes:
    """The canonical JSON of ``index`` (keys in the OCI spec's order)."""
    out: dict[str, Any] = {"schemaVersion": index.schema_version}
    put(out, "mediaType", index.media_type)
    put(out, "artifactType", index.artifact_type)
    out["manifests"] = _descriptors(index.manifests)
    if index.subject is not None:
        out["subject"] = index.subject.to_dict()
    put(out, "annotations", sorted_map(index.annotations))
    return dumps(out)


def config_bytes(config: ImageConfig) -> bytes:
    """The canonical JSON of ``config`` (OCI key order; Docker's keys inside ``config``)."""
    out: dict[str, Any] = {}
    put(out, "created", config.created)
    put(out, "author", config.author)
    out["architecture"] = config.architecture
    out["os"] = config.os
    put(out, "variant", config.variant)
    if config.config is not None:
        out["config"] = _container_config_dict(config.config)
    out["rootfs"] = {"type": config.rootfs.type, "diff_ids": list(config.rootfs.diff_ids)}
    put(out, "history", [_history_dict(h) for h in config.history])
    return dumps(out)


def _empty_set(keys: Sequence[str]) -> dict[str, Any]:
    return {key: {} for key in sorted(keys)}


def _container_config_dict(c: ContainerConfig) -> dict[str, Any]:
    # The OCI ImageConfig fields first, then Docker's additions, as BuildKit orders them.
    out: dict[str, Any] = {}
    put(out, "User", c.user)
    put(out, "ExposedPorts", _empty_set(c.exposed_ports))
    put(out, "Env", c.env)
    if c.entrypoint is not None:
        out["Entrypoint"] = list(c.entrypoint)  # [] is kept: it clears the base's
    if c.cmd is not None:
        out["Cmd"] = list(c.cmd)
    put(out, "Volumes", _empty_set(c.volumes))
    put(out, "WorkingDir", c.working_dir)
    put(out, "Labels", sorted_map(c.labels))
    put(out, "StopSignal", c.stop_signal)
    put(out, "ArgsEscaped", c.args_escaped)
    if c.healthcheck is not None:
        out["Healthcheck"] = _healthcheck_dict(c.healthcheck)
    put(out, "OnBuild", c.on_build)
    put(out, "Shell", c.shell)
    return out


def _healthcheck_dict(h: Healthcheck) -> dict[str, Any]:
    out: dict[str, Any] = {}
    put(out, "Test", h.test)
    for key, value in (
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
        ("Retries", h.retries),
    ):
        if value:
            out[key] = value
    return out


def _history_dict(h: History) -> dict[str, Any]:
    out: dict[str, Any] = {}
    put(out, "created", h.created)
    put(out, "author", h.author)
    put(out, "created_by", h.created_by)
    put(out, "comment", h.comment)
    put(out, "empty_layer", h.empty_layer)
    return out


# --------------------------------------------------------------------------- identity


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """The ChainID of each layer stack: the name of a snapshot of layers 0..n applied.

    ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
    """
    chain: list[Digest] = []
    for diff_id in diff_ids:
        chain.append(chain_id_above(chain[-1] if chain else "", diff_id))
    return chain


def chain_id_above(parent: str, diff_id: Digest) -> Digest:
    """The ChainID of ``diff_id`` applied on the stack named ``parent`` ("" for none)."""
    if not parent:
        return diff_id
    return Digest("sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest())


def referenced_digests(raw: bytes, media_type: str | None) -> list[Digest]:
    """The blobs a manifest or index points at, for garbage collection, first seen first.

    A manifest refers to its config, its layers and its subject; an index to its
    manifests and its subject. Any other media type (a layer, a config, an artifact
    blob) is a leaf and refers to nothing. ``None`` means: tell from the document.
    """
    if media_type is not None and media_type not in _MANIFEST_TYPES | _INDEX_TYPES:
        return []
    document = parse_any(raw, media_type)
    if isinstance(document, Manifest):
        children = [document.config, *document.layers]
    else:
        children = list(document.manifests)
    if document.subject is not None:
        children.append(document.subject)
    return list(dict.fromkeys(d.digest for d in children))
