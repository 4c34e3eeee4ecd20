"""Descriptors: the typed pointer (media type, digest, size) from one blob to another.

This module owns the descriptor record and its JSON form. A descriptor is how a manifest
names its config and layers and how an index names its manifests; the size it carries is
what lets a reader refuse a blob that is longer than announced before hashing it all.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from moorage.oci._json import Obj, put, sorted_map
from moorage.oci._jsonpath import At
from moorage.oci.digest import Digest
from moorage.oci.platform import Platform, platform_from_obj

__all__ = ["Descriptor", "descriptor_from_dict"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Descriptor(NamedTuple):
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = _EMPTY
    platform: Platform | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form; keys in the order Go's image-spec types write them."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        put(out, "urls", self.urls)
        put(out, "annotations", sorted_map(self.annotations))
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        put(out, "artifactType", self.artifact_type)
        return out


def descriptor_from_dict(data: object, where: str = "descriptor") -> Descriptor:
    """Validate a decoded descriptor object; errors start with ``where``.

    Keys this module does not know (``data``, Docker's ``features``) are ignored.
    """
    return descriptor_from_obj(Obj(data, At(where)))


def descriptor_from_obj(o: Obj) -> Descriptor:
    platform = o.child("platform")
    return Descriptor(
        media_type=o.string("mediaType"),
        digest=o.digest("digest"),
        size=o.integer("size"),
        urls=o.strings("urls"),
        annotations=o.string_map("annotations"),
        platform=None if platform is None else platform_from_obj(platform),
        artifact_type=o.opt_string("artifactType"),
    )
