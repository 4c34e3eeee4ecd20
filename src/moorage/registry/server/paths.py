"""The URL layout of the distribution API: request paths in, endpoints out, and back.

::

    /v2/                                      BASE
    /v2/_catalog                              CATALOG
    /v2/<name>/manifests/<tag-or-digest>      MANIFEST
    /v2/<name>/blobs/<digest>                 BLOB
    /v2/<name>/blobs/uploads/                 UPLOADS     (start an upload, or mount)
    /v2/<name>/blobs/uploads/<id>             UPLOAD
    /v2/<name>/tags/list                      TAGS
    /v2/<name>/referrers/<digest>             REFERRERS

A name may itself contain ``manifests`` or ``blobs`` as a component, so an endpoint is
recognised from the end of the path: tags, digests and upload ids never contain a
slash. The name is validated raw (see :mod:`moorage.registry.server.names`); the last
segment is percent-decoded, since clients may write a digest's colon as ``%3A``.
"""

from __future__ import annotations

from enum import Enum
from typing import Final, NamedTuple
from urllib.parse import quote, unquote

from moorage.registry.server.errors import EndpointUnknown
from moorage.registry.server.names import check_name

__all__ = [
    "API_VERSION",
    "API_VERSION_HEADER",
    "Endpoint",
    "Kind",
    "blob_location",
    "manifest_location",
    "next_link",
    "parse_path",
    "upload_location",
]


# On every response: what clients take as "this speaks the v2 API".
API_VERSION_HEADER: Final = "Docker-Distribution-API-Version"
API_VERSION: Final = "registry/2.0"


class Kind(Enum):
    BASE = "base"
    CATALOG = "catalog"
    MANIFEST = "manifest"
    BLOB = "blob"
    UPLOADS = "uploads"
    UPLOAD = "upload"
    TAGS = "tags"
    REFERRERS = "referrers"


class Endpoint(NamedTuple):
    kind: Kind
    name: str = ""  # the repository; "" for BASE and CATALOG
    reference: str = ""  # tag or digest, digest, or upload id: decoded, not yet validated


_BASE = Endpoint(Kind.BASE)
_CATALOG = Endpoint(Kind.CATALOG)


def parse_path(raw_path: str) -> Endpoint:
    """The endpoint of a request path (its query string, if any, is ignored).

    EndpointUnknown for a path outside the API; NameInvalid for a bad repository name.
    """
    path = raw_path.partition("?")[0]
    if path in ("/v2/", "/v2"):
        return _BASE
    if not path.startswith("/v2/"):
        raise EndpointUnknown(f"no such endpoint: {path[:200]}")
    if path == "/v2/_catalog":
        return _CATALOG
    segments = path[4:].split("/")
    n = len(segments)
    last = segments[-1]
    if n >= 3 and segments[-2] == "manifests":
        return _endpoint(Kind.MANIFEST, segments[:-2], last)
    if n >= 3 and segments[-2] == "blobs" and ":" in unquote(last):
        return _endpoint(Kind.BLOB, segments[:-2], last)
    if n >= 4 and segments[-3:] == ["blobs", "uploads", ""]:
        return _endpoint(Kind.UPLOADS, segments[:-3], "")
    if n >= 3 and segments[-2:] == ["blobs", "uploads"]:
        return _endpoint(Kind.UPLOADS, segments[:-2], "")
    if n >= 4 and segments[-3] == "blobs" and segments[-2] == "uploads":
        return _endpoint(Kind.UPLOAD, segments[:-3], last)
    if n >= 3 and segments[-2] == "blobs":
        return _endpoint(Kind.BLOB, segments[:-2], last)
    if n >= 3 and segments[-2:] == ["tags", "list"]:
        return _endpoint(Kind.TAGS, segments[:-2], "")
    if n >= 3 and segments[-2] == "referrers":
        return _endpoint(Kind.REFERRERS, segments[:-2], last)
    raise EndpointUnknown(f"no such endpoint: {path[:200]}")


def _endpoint(kind: Kind, name_segments: list[str], last: str) -> Endpoint:
    name = check_name("/".join(name_segments))
    return Endpoint(kind, name, unquote(last) if "%" in last else last)


# Locations are relative (the spec allows it): a Host header is the client's to choose,
# and echoing it back would let a request steer where the next one goes.


def blob_location(name: str, digest: str) -> str:
    return f"/v2/{name}/blobs/{digest}"


def manifest_location(name: str, reference: str) -> str:
    return f"/v2/{name}/manifests/{reference}"


def upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def next_link(path: str, n: int, last: str) -> str:
    """The ``Link`` header value for the next page after ``last`` (RFC 5988)."""
    return f'<{path}?n={n}&last={quote(last, safe="/")}>; rel="next"'
