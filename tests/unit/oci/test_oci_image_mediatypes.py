"""Media type names and classification (moorage.oci.mediatypes)."""

from __future__ import annotations

import pytest

from moorage.errors import InvalidArgument
from moorage.oci import (
    is_config,
    is_index,
    is_layer,
    is_manifest,
    layer_compression,
    layer_media_type,
    mediatypes,
)

_KINDS = [
    # media type, manifest, index, config, layer
    ("application/vnd.oci.image.manifest.v1+json", True, False, False, False),
    ("application/vnd.docker.distribution.manifest.v2+json", True, False, False, False),
    ("application/vnd.oci.image.index.v1+json", False, True, False, False),
    ("application/vnd.docker.distribution.manifest.list.v2+json", False, True, False, False),
    ("application/vnd.oci.image.config.v1+json", False, False, True, False),
    ("application/vnd.docker.container.image.v1+json", False, False, True, False),
    ("application/vnd.oci.image.layer.v1.tar+gzip", False, False, False, True),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", False, False, False, True),
    ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", False, False, False, True),
    ("application/vnd.oci.empty.v1+json", False, False, False, False),
    ("application/vnd.docker.distribution.manifest.v1+prettyjws", False, False, False, False),
    ("application/json", False, False, False, False),
]


@pytest.mark.parametrize(("media_type", "manifest", "index", "config", "layer"), _KINDS)
def test_classification(
    media_type: str, manifest: bool, index: bool, config: bool, layer: bool
) -> None:
    assert is_manifest(media_type) is manifest
    assert is_index(media_type) is index
    assert is_config(media_type) is config
    assert is_layer(media_type) is layer


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        (mediatypes.OCI_LAYER, None),
        (mediatypes.OCI_LAYER_GZIP, "gzip"),
        (mediatypes.OCI_LAYER_ZSTD, "zstd"),
        (mediatypes.OCI_LAYER_NONDISTRIBUTABLE, None),
        (mediatypes.OCI_LAYER_NONDISTRIBUTABLE_GZIP, "gzip"),
        (mediatypes.OCI_LAYER_NONDISTRIBUTABLE_ZSTD, "zstd"),
        (mediatypes.DOCKER_LAYER, "gzip"),
        (mediatypes.DOCKER_FOREIGN_LAYER, "gzip"),
        (mediatypes.DOCKER_LAYER_TAR, None),
    ],
)
def test_layer_compression(media_type: str, compression: str | None) -> None:
    assert layer_compression(media_type) == compression


def test_layer_compression_of_a_non_layer_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match=r'^not a layer media type: "application/vnd\.oci'):
        layer_compression(mediatypes.OCI_CONFIG)


@pytest.mark.parametrize(
    ("compression", "docker", "media_type"),
    [
        (None, False, "application/vnd.oci.image.layer.v1.tar"),
        ("gzip", False, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", False, "application/vnd.oci.image.layer.v1.tar+zstd"),
        (None, True, "application/vnd.docker.image.rootfs.diff.tar"),
        ("gzip", True, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    ],
)
def test_layer_media_type(compression: str | None, docker: bool, media_type: str) -> None:
    assert layer_media_type(compression, docker=docker) == media_type


def test_layer_media_type_round_trips_compression() -> None:
    for compression in (None, "gzip", "zstd"):
        assert layer_compression(layer_media_type(compression)) == compression


def test_zstd_has_no_docker_media_type() -> None:
    with pytest.raises(InvalidArgument, match="^zstd layers need OCI media types"):
        layer_media_type("zstd", docker=True)


def test_unknown_compression_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match='^unknown layer compression: "bzip2"$'):
        layer_media_type("bzip2")
