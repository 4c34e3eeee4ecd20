"""Manifests and indexes: parsing, canonical bytes, sniffing, GC references (moorage.oci.image)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.errors import InvalidArgument, NotSupported
from moorage.oci import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    Index,
    Manifest,
    Platform,
    index_bytes,
    manifest_bytes,
    mediatypes,
    parse_any,
    parse_digest,
    parse_index,
    parse_manifest,
    referenced_digests,
    select_manifest,
    sha256_of,
)


def _d(n: int) -> str:
    return f"sha256:{n:064x}"


# An OCI manifest as BuildKit writes one: gzip and zstd layers, annotations.
OCI_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": _d(1),
        "size": 1470,
    },
    "layers": [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": _d(2),
            "size": 3623807,
        },
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
            "digest": _d(3),
            "size": 120,
            "annotations": {"org.opencontainers.image.title": "app.tar"},
        },
    ],
    "annotations": {"org.opencontainers.image.created": "2024-05-01T10:00:00Z"},
}

# A Docker schema 2 manifest as docker push writes one (size before digest), with a
# foreign Windows layer.
DOCKER_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": 7023,
        "digest": _d(11),
    },
    "layers": [
        {
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "size": 1718332879,
            "digest": _d(12),
            "urls": ["https://mcr.microsoft.com/v2/windows/nanoserver/blobs/" + _d(12)],
        },
        {
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 32654,
            "digest": _d(13),
        },
    ],
}

# A manifest list for amd64, arm64 and arm v7.
MANIFEST_LIST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [
        {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 528,
            "digest": _d(21),
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 528,
            "digest": _d(22),
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
        {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 528,
            "digest": _d(23),
            "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
        },
    ],
}

# An OCI index with a BuildKit attestation next to the image.
OCI_INDEX: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _d(31),
            "size": 1050,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _d(32),
            "size": 840,
            "annotations": {
                "vnd.docker.reference.digest": _d(31),
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        },
    ],
}


def _raw(document: object) -> bytes:
    return json.dumps(document, indent=3).encode()


def test_oci_manifest() -> None:
    manifest = parse_manifest(_raw(OCI_MANIFEST))

    assert manifest.schema_version == 2
    assert manifest.media_type == mediatypes.OCI_MANIFEST
    assert manifest.config == Descriptor(mediatypes.OCI_CONFIG, parse_digest(_d(1)), 1470)
    assert [layer.media_type for layer in manifest.layers] == [
        mediatypes.OCI_LAYER_GZIP,
        mediatypes.OCI_LAYER_ZSTD,
    ]
    assert manifest.layers[1].annotations == {"org.opencontainers.image.title": "app.tar"}
    assert manifest.annotations == {"org.opencontainers.image.created": "2024-05-01T10:00:00Z"}
    assert manifest.subject is None


def test_docker_manifest() -> None:
    manifest = parse_manifest(_raw(DOCKER_MANIFEST))

    assert manifest.media_type == mediatypes.DOCKER_MANIFEST
    assert manifest.config.digest == _d(11)
    assert manifest.layers[0].urls == (
        "https://mcr.microsoft.com/v2/windows/nanoserver/blobs/" + _d(12),
    )
    assert manifest.layers[1].size == 32654


def test_manifest_list() -> None:
    index = parse_index(_raw(MANIFEST_LIST))

    assert index.media_type == mediatypes.DOCKER_MANIFEST_LIST
    assert [m.platform for m in index.manifests] == [
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
        Platform("linux", "arm", "v7"),
    ]
    assert select_manifest(index.manifests, Platform("linux", "arm", "v7")).digest == _d(23)


@pytest.mark.parametrize("document", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_round_trip(document: dict[str, Any]) -> None:
    manifest = parse_manifest(_raw(document))

    raw = manifest_bytes(manifest)

    assert parse_manifest(raw) == manifest
    assert manifest_bytes(parse_manifest(raw)) == raw


@pytest.mark.parametrize("document", [MANIFEST_LIST, OCI_INDEX])
def test_index_round_trip(document: dict[str, Any]) -> None:
    index = parse_index(_raw(document))

    raw = index_bytes(index)

    assert parse_index(raw) == index
    assert index_bytes(parse_index(raw)) == raw


def test_manifest_bytes_are_canonical() -> None:
    config = Descriptor(mediatypes.OCI_EMPTY, parse_digest(_d(1)), 2)
    subject = Descriptor(mediatypes.OCI_MANIFEST, parse_digest(_d(2)), 9)
    manifest = Manifest(
        2,
        mediatypes.OCI_MANIFEST,
        config,
        (),
        annotations={"z": "1", "a": "<&>"},
        subject=subject,
        artifact_type="application/vnd.example+json",
    )

    assert (
        manifest_bytes(manifest)
        == (
            '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            '"artifactType":"application/vnd.example+json",'
            f'"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{_d(1)}","size":2}},'
            '"layers":[],'
            f'"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{_d(2)}",'
            '"size":9},'
            '"annotations":{"a":"\\u003c\\u0026\\u003e","z":"1"}}'
        ).encode()
    )


def test_equal_records_have_equal_digests() -> None:
    first = parse_manifest(_raw(OCI_MANIFEST))
    second = parse_manifest(json.dumps(OCI_MANIFEST, indent=None).encode())

    assert sha256_of(manifest_bytes(first)) == sha256_of(manifest_bytes(second))


def test_index_without_media_type_keeps_none() -> None:
    index = parse_index(b'{"schemaVersion":2,"manifests":[]}')

    assert index == Index(2, None, ())
    assert index_bytes(index) == b'{"schemaVersion":2,"manifests":[]}'


def test_unknown_keys_are_ignored() -> None:
    document = {**OCI_MANIFEST, "future": {"x": 1}}

    assert parse_manifest(_raw(document)) == parse_manifest(_raw(OCI_MANIFEST))


_DELETE = object()


def _broken(path: str, value: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(OCI_MANIFEST))
    *parents, last = path.split(".")
    target: Any = document
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("schemaVersion", 1, "manifest.json: schemaVersion: must be 2, not 1"),
        ("schemaVersion", _DELETE, "manifest.json: schemaVersion: missing"),
        ("config", _DELETE, "manifest.json: config: missing"),
        ("config", [], "manifest.json: config: must be an object, not array"),
        ("layers", _DELETE, "manifest.json: layers: missing"),
        ("layers", {}, "manifest.json: layers: must be an array, not object"),
        (
            "layers.1.digest",
            "sha256:XYZ",
            'manifest.json: layers[1].digest: invalid digest "sha256:XYZ"',
        ),
        ("layers.0.size", -5, "manifest.json: layers[0].size: must be at least 0, not -5"),
        ("config.mediaType", 7, "manifest.json: config.mediaType: must be a string, not integer"),
        (
            "mediaType",
            "application/vnd.oci.image.index.v1+json",
            'manifest.json: mediaType: not a manifest media type: "application/vnd.oci.image.'
            'index.v1+json"',
        ),
        (
            "annotations",
            {"k": ["v"]},
            "manifest.json: annotations.k: must be a string, not array",
        ),
    ],
)
def test_invalid_manifests(path: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_manifest(_raw(_broken(path, value)))

    assert str(caught.value) == message


def test_index_refuses_a_manifest_media_type() -> None:
    with pytest.raises(InvalidArgument, match=r"^index\.json: mediaType: not an index media type"):
        parse_index(_raw({**MANIFEST_LIST, "mediaType": mediatypes.DOCKER_MANIFEST}))


def test_index_entry_errors_name_the_entry() -> None:
    document = json.loads(json.dumps(MANIFEST_LIST))
    document["manifests"][2]["platform"]["architecture"] = ""

    with pytest.raises(InvalidArgument) as caught:
        parse_index(_raw(document))

    assert str(caught.value) == (
        "index.json: manifests[2].platform.architecture: must not be empty"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "manifest.json:1:1: invalid json: expecting value"),
        (b'{"schemaVersion": 2,', "manifest.json:1:21: invalid json: expecting property name"),
        (b"\xff", "manifest.json: invalid json: not UTF-8 text"),
        (b"[]", "manifest.json: must be an object, not array"),
    ],
)
def test_malformed_json(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_manifest(raw)

    assert str(caught.value).startswith(message)


def test_source_names_the_document() -> None:
    with pytest.raises(InvalidArgument, match=r"^blobs/sha256/ab: schemaVersion: missing$"):
        parse_manifest(b"{}", source="blobs/sha256/ab")


# --------------------------------------------------------------------------- size limit


def _padded(document: dict[str, Any], size: int) -> bytes:
    raw = json.dumps(document).encode()
    return raw + b" " * (size - len(raw))  # trailing whitespace is valid JSON


def test_a_manifest_of_exactly_the_limit_is_read() -> None:
    raw = _padded(OCI_MANIFEST, MAX_MANIFEST_SIZE)

    assert len(raw) == 4 * 1024 * 1024
    assert parse_manifest(raw).config.size == 1470


@pytest.mark.parametrize("parse", [parse_manifest, parse_index, parse_any])
def test_a_manifest_over_the_limit_is_refused(parse: Any) -> None:
    raw = _padded(OCI_MANIFEST, MAX_MANIFEST_SIZE + 1)

    with pytest.raises(InvalidArgument, match=r"^manifest too large: 4194305 bytes$"):
        parse(raw)


# --------------------------------------------------------------------------- parse_any


@pytest.mark.parametrize(
    ("document", "media_type", "kind"),
    [
        (OCI_MANIFEST, None, Manifest),
        (OCI_MANIFEST, mediatypes.OCI_MANIFEST, Manifest),
        (DOCKER_MANIFEST, None, Manifest),
        (MANIFEST_LIST, None, Index),
        (OCI_INDEX, mediatypes.OCI_INDEX, Index),
        ({k: v for k, v in OCI_MANIFEST.items() if k != "mediaType"}, None, Manifest),
        ({k: v for k, v in OCI_INDEX.items() if k != "mediaType"}, None, Index),
        ({k: v for k, v in OCI_INDEX.items() if k != "mediaType"}, mediatypes.OCI_INDEX, Index),
    ],
)
def test_parse_any(document: dict[str, Any], media_type: str | None, kind: type) -> None:
    assert isinstance(parse_any(_raw(document), media_type), kind)


def test_parse_any_refuses_a_mismatched_media_type() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_any(_raw(OCI_INDEX), mediatypes.OCI_MANIFEST)

    assert str(caught.value) == (
        'manifest.json: mediaType: "application/vnd.oci.image.index.v1+json" does not match '
        '"application/vnd.oci.image.manifest.v1+json"'
    )


def test_parse_any_cannot_tell() -> None:
    with pytest.raises(InvalidArgument, match="^manifest.json: not a manifest or an index"):
        parse_any(b'{"schemaVersion": 2}')


def test_parse_any_refuses_schema_1() -> None:
    with pytest.raises(NotSupported, match=r"^unsupported manifest media type: .*prettyjws\"$"):
        parse_any(b'{"schemaVersion": 1}', mediatypes.DOCKER_MANIFEST_V1_SIGNED)


# --------------------------------------------------------------------------- GC references


def test_referenced_digests_of_a_manifest() -> None:
    subject = {"mediaType": mediatypes.OCI_MANIFEST, "digest": _d(9), "size": 3}
    document = {**OCI_MANIFEST, "subject": subject}

    assert referenced_digests(_raw(document), mediatypes.OCI_MANIFEST) == [
        _d(1),
        _d(2),
        _d(3),
        _d(9),
    ]


def test_referenced_digests_of_an_index() -> None:
    assert referenced_digests(_raw(MANIFEST_LIST), None) == [_d(21), _d(22), _d(23)]


def test_referenced_digests_are_listed_once() -> None:
    document = json.loads(json.dumps(OCI_MANIFEST))
    document["layers"].append(document["layers"][0])

    assert referenced_digests(_raw(document), mediatypes.OCI_MANIFEST) == [_d(1), _d(2), _d(3)]


@pytest.mark.parametrize(
    "media_type", [mediatypes.OCI_LAYER_GZIP, mediatypes.OCI_CONFIG, "application/x-sbom"]
)
def test_leaves_refer_to_nothing(media_type: str) -> None:
    assert referenced_digests(b"\x1f\x8b not json", media_type) == []
