"""Media types of the OCI image spec and of Docker's image manifest v2 schema 2.

This module owns the names and what kind of document or blob each one denotes: a
manifest, an index (Docker: manifest list), an image config or a layer, and a layer's
compression. The constants are plain strings as they appear on the wire.
"""

from __future__ import annotations

import json
from typing import Final, Literal

from moorage.errors import InvalidArgument

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_LAYER_TAR",
    "DOCKER_LAYER_ZSTD",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_MANIFEST_V1",
    "DOCKER_MANIFEST_V1_SIGNED",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE",
    "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "Compression",
    "is_config",
    "is_index",
    "is_layer",
    "is_manifest",
    "layer_compression",
    "layer_media_type",
]

Compression = Literal["gzip", "zstd"]

# OCI image spec
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
# Deprecated by the spec, still found in Windows base images: layers a registry may not
# redistribute, fetched from the descriptor's urls instead.
OCI_LAYER_NONDISTRIBUTABLE: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP: Final = OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD: Final = OCI_LAYER_NONDISTRIBUTABLE + "+zstd"
# The two-byte blob "{}": the config of an artifact that has none.
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"

# Docker image manifest v2, schema 2
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
# Not in schema 2 itself, but written by docker save, containerd and BuildKit.
DOCKER_LAYER_TAR: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD: Final = "application/vnd.docker.image.rootfs.diff.tar.zstd"
# Schema 1, retired by Docker: named only so that a pull can refuse it clearly.
DOCKER_MANIFEST_V1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"

_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
_INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
_CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})
_LAYER_COMPRESSION: dict[str, Compression | None] = {
    OCI_LAYER: None,
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDISTRIBUTABLE: None,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
    DOCKER_LAYER: "gzip",
    DOCKER_FOREIGN_LAYER: "gzip",
    DOCKER_LAYER_TAR: None,
    DOCKER_LAYER_ZSTD: "zstd",
}


def is_manifest(media_type: str) -> bool:
    """An image manifest (OCI or Docker schema 2), not an index."""
    return media_type in _MANIFESTS


def is_index(media_type: str) -> bool:
    """An OCI image index or a Docker manifest list."""
    return media_type in _INDEXES


def is_config(media_type: str) -> bool:
    """An image config (OCI or Docker); artifact configs are not."""
    return media_type in _CONFIGS


def is_layer(media_type: str) -> bool:
    """A filesystem layer (a tar, maybe compressed) of any flavour, foreign ones included."""
    return media_type in _LAYER_COMPRESSION


def layer_compression(media_type: str) -> Compression | None:
    """``"gzip"``, ``"zstd"`` or ``None`` (a plain tar) for a layer media type."""
    try:
        return _LAYER_COMPRESSION[media_type]
    except KeyError:
        raise InvalidArgument(f"not a layer media type: {_quote(media_type)}") from None


def layer_media_type(compression: str | None, docker: bool = False) -> str:
    """The media type to give a layer compressed with ``compression`` (None: plain tar).

    ``docker`` picks the Docker schema 2 names. Schema 2 has no zstd layer, and Docker
    Engine before 23 cannot unpack one, so zstd needs OCI media types.
    """
    if compression is None:
        return DOCKER_LAYER_TAR if docker else OCI_LAYER
    if compression == "gzip":
        return DOCKER_LAYER if docker else OCI_LAYER_GZIP
    if compression == "zstd":
        if docker:
            raise InvalidArgument("zstd layers need OCI media types, not docker ones")
        return OCI_LAYER_ZSTD
    raise InvalidArgument(f"unknown layer compression: {_quote(compression)}")


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
