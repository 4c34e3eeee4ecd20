"""Descriptors and their JSON form (moorage.oci.descriptor)."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.errors import InvalidArgument
from moorage.oci import Descriptor, Platform, descriptor_from_dict, parse_digest

D = parse_digest("sha256:" + "ab" * 32)
_FULL: dict[str, Any] = {
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": str(D),
    "size": 7143,
    "urls": ["https://mirror.example/blob"],
    "annotations": {"org.opencontainers.image.ref.name": "1.0"},
    "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
    "artifactType": "application/vnd.example.sbom",
}


def test_every_field_is_read() -> None:
    descriptor = descriptor_from_dict(_FULL)

    assert descriptor == Descriptor(
        media_type="application/vnd.oci.image.manifest.v1+json",
        digest=D,
        size=7143,
        urls=("https://mirror.example/blob",),
        annotations={"org.opencontainers.image.ref.name": "1.0"},
        platform=Platform("linux", "arm", "v7"),
        artifact_type="application/vnd.example.sbom",
    )


def test_to_dict_is_the_inverse() -> None:
    assert descriptor_from_dict(_FULL).to_dict() == _FULL


def test_to_dict_writes_keys_in_spec_order() -> None:
    assert list(descriptor_from_dict(_FULL).to_dict()) == [
        "mediaType",
        "digest",
        "size",
        "urls",
        "annotations",
        "platform",
        "artifactType",
    ]


def test_empty_fields_are_left_out() -> None:
    descriptor = Descriptor("application/vnd.oci.image.layer.v1.tar", D, 0)

    assert descriptor.to_dict() == {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": str(D),
        "size": 0,
    }


def test_unknown_keys_and_nulls_are_ignored() -> None:
    data = {"mediaType": "x/y", "digest": str(D), "size": 1, "data": "e30=", "urls": None}

    assert descriptor_from_dict(data) == Descriptor("x/y", D, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": -1}, "descriptor: size: must be at least 0, not -1"),
        ({"size": True}, "descriptor: size: must be an integer, not boolean"),
        ({"size": "1"}, "descriptor: size: must be an integer, not string"),
        ({"digest": "sha256:abc"}, 'descriptor: digest: invalid digest "sha256:abc"'),
        ({"mediaType": None}, "descriptor: mediaType: missing"),
        ({"mediaType": ""}, "descriptor: mediaType: must not be empty"),
        ({"urls": "https://x"}, "descriptor: urls: must be an array, not string"),
        ({"annotations": {"a": 1}}, "descriptor: annotations.a: must be a string, not integer"),
        ({"platform": {"os": "linux"}}, "descriptor: platform.architecture: missing"),
    ],
)
def test_invalid_descriptors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        descriptor_from_dict({**_FULL, **change})

    assert str(caught.value) == message


def test_where_starts_the_message() -> None:
    with pytest.raises(InvalidArgument, match=r"^index\.json: manifests\[3\]: must be an object"):
        descriptor_from_dict([], "index.json: manifests[3]")
