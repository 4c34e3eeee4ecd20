"""The registry's errors and the one table that turns them into HTTP responses.

Every error the server answers with is a class here, under the closed set of
:mod:`moorage.errors`, so the rest of Moorage can catch them as usual::

    MoorageError
    ├── InvalidArgument
    │   ├── NameInvalid            400 NAME_INVALID
    │   ├── TagInvalid             400 TAG_INVALID (a legacy code the spec allows)
    │   ├── DigestInvalid          400 DIGEST_INVALID
    │   ├── ManifestInvalid        400 MANIFEST_INVALID
    │   │   └── ManifestTooLarge   413 MANIFEST_INVALID
    │   ├── ManifestBlobUnknown    400 MANIFEST_BLOB_UNKNOWN
    │   ├── BlobUploadInvalid      400 BLOB_UPLOAD_INVALID
    │   ├── SizeInvalid            400 SIZE_INVALID
    │   ├── PaginationInvalid      400 UNSUPPORTED
    │   ├── ChunkOutOfOrder        416 BLOB_UPLOAD_INVALID
    │   └── RangeNotSatisfiable    416 UNSUPPORTED (a blob read past its end)
    ├── NotFound
    │   ├── NameUnknown            404 NAME_UNKNOWN
    │   ├── ManifestUnknown        404 MANIFEST_UNKNOWN
    │   ├── BlobUnknown            404 BLOB_UNKNOWN
    │   ├── BlobUploadUnknown      404 BLOB_UPLOAD_UNKNOWN
    │   └── EndpointUnknown        404 UNSUPPORTED
    ├── NotSupported
    │   ├── MethodNotAllowed       405 UNSUPPORTED
    │   └── ReadOnly               405 UNSUPPORTED (Allow: GET, HEAD, as distribution's
    │                                  read-only mode and pull-through cache answer writes)
    ├── PermissionDenied
    │   ├── Unauthorized           401 UNAUTHORIZED (with a WWW-Authenticate challenge)
    │   └── Denied                 403 DENIED
    └── Unavailable
        ├── UploadBusy             429 TOOMANYREQUESTS
        ├── UpstreamUnavailable    503 UNAVAILABLE (a pull-through cache's upstream is down)
        └── UpstreamInvalid        502 UNKNOWN (its upstream sent what cannot be stored)

Messages are Moorage's: lower-case, naming the input (``blob unknown to registry:
library/busybox@sha256:...``). They go in the ``message`` field of the spec's body,
where clients print them; ``detail`` carries the request's pieces as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from moorage.errors import (
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    PermissionDenied,
    Unavailable,
)

__all__ = [
    "BlobUnknown",
    "BlobUploadInvalid",
    "BlobUploadUnknown",
    "ChunkOutOfOrder",
    "Denied",
    "DigestInvalid",
    "EndpointUnknown",
    "ErrorReply",
    "ManifestBlobUnknown",
    "ManifestInvalid",
    "ManifestTooLarge",
    "ManifestUnknown",
    "MethodNotAllowed",
    "NameInvalid",
    "NameUnknown",
    "PaginationInvalid",
    "RangeNotSatisfiable",
    "ReadOnly",
    "RegistryError",
    "SizeInvalid",
    "TagInvalid",
    "Unauthorized",
    "UploadBusy",
    "UpstreamInvalid",
    "UpstreamUnavailable",
    "error_body",
    "reply_for",
]


class RegistryError(MoorageError):
    """Mixed into each class below: extra response headers and the ``detail`` field."""

    def __init__(
        self,
        message: str,
        *,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.detail = detail
        self.headers: Mapping[str, str] = headers or {}


class NameInvalid(RegistryError, InvalidArgument):
    pass


class TagInvalid(RegistryError, InvalidArgument):
    pass


class DigestInvalid(RegistryError, InvalidArgument):
    pass


class ManifestInvalid(RegistryError, InvalidArgument):
    pass


class ManifestTooLarge(ManifestInvalid):
    pass


class ManifestBlobUnknown(RegistryError, InvalidArgument):
    pass


class BlobUploadInvalid(RegistryError, InvalidArgument):
    pass


class SizeInvalid(RegistryError, InvalidArgument):
    pass


class PaginationInvalid(RegistryError, InvalidArgument):
    pass


class ChunkOutOfOrder(RegistryError, InvalidArgument):
    """An upload chunk that does not start where the data so far ends."""


class RangeNotSatisfiable(RegistryError, InvalidArgument):
    """A blob read whose range lies past the blob's end."""


class NameUnknown(RegistryError, NotFound):
    pass


class ManifestUnknown(RegistryError, NotFound):
    pass


class BlobUnknown(RegistryError, NotFound):
    pass


class BlobUploadUnknown(RegistryError, NotFound):
    pass


class EndpointUnknown(RegistryError, NotFound):
    pass


class MethodNotAllowed(RegistryError, NotSupported):
    pass


class ReadOnly(MethodNotAllowed):
    pass


class Unauthorized(RegistryError, PermissionDenied):
    """No credentials, bad ones, or a token without the scope: answered with a challenge."""


class Denied(RegistryError, PermissionDenied):
    pass


class UploadBusy(RegistryError, Unavailable):
    """Another request (or process) holds the upload session."""


class UpstreamUnavailable(RegistryError, Unavailable):
    """A pull-through cache cannot reach its upstream, and has nothing cached to serve."""


class UpstreamInvalid(RegistryError, Unavailable):
    """A pull-through cache's upstream answered with what cannot be stored: content that
    does not hash to its digest, a manifest that does not parse, a refusal."""


class ErrorReply(NamedTuple):
    status: int
    code: str


# The one table: the first class of an error's MRO found here decides its reply.
# Foreign Moorage errors (from the store) land on their closed-set base class.
_REPLIES: dict[type[BaseException], ErrorReply] = {
    NameInvalid: ErrorReply(400, "NAME_INVALID"),
    TagInvalid: ErrorReply(400, "TAG_INVALID"),
    DigestInvalid: ErrorReply(400, "DIGEST_INVALID"),
    ManifestTooLarge: ErrorReply(413, "MANIFEST_INVALID"),
    ManifestInvalid: ErrorReply(400, "MANIFEST_INVALID"),
    ManifestBlobUnknown: ErrorReply(400, "MANIFEST_BLOB_UNKNOWN"),
    BlobUploadInvalid: ErrorReply(400, "BLOB_UPLOAD_INVALID"),
    SizeInvalid: ErrorReply(400, "SIZE_INVALID"),
    PaginationInvalid: ErrorReply(400, "UNSUPPORTED"),
    ChunkOutOfOrder: ErrorReply(416, "BLOB_UPLOAD_INVALID"),
    RangeNotSatisfiable: ErrorReply(416, "UNSUPPORTED"),
    NameUnknown: ErrorReply(404, "NAME_UNKNOWN"),
    ManifestUnknown: ErrorReply(404, "MANIFEST_UNKNOWN"),
    BlobUnknown: ErrorReply(404, "BLOB_UNKNOWN"),
    BlobUploadUnknown: ErrorReply(404, "BLOB_UPLOAD_UNKNOWN"),
    EndpointUnknown: ErrorReply(404, "UNSUPPORTED"),
    MethodNotAllowed: ErrorReply(405, "UNSUPPORTED"),
    Unauthorized: ErrorReply(401, "UNAUTHORIZED"),
    Denied: ErrorReply(403, "DENIED"),
    UploadBusy: ErrorReply(429, "TOOMANYREQUESTS"),
    UpstreamUnavailable: ErrorReply(503, "UNAVAILABLE"),
    UpstreamInvalid: ErrorReply(502, "UNKNOWN"),
    # Errors from below the server. 5xx bodies are not bound to the spec's codes.
    InvalidArgument: ErrorReply(400, "UNSUPPORTED"),
    NotFound: ErrorReply(404, "UNSUPPORTED"),
    NotSupported: ErrorReply(405, "UNSUPPORTED"),
    PermissionDenied: ErrorReply(403, "DENIED"),
    Unavailable: ErrorReply(503, "UNAVAILABLE"),
    MoorageError: ErrorReply(500, "UNKNOWN"),
}


def reply_for(exc: BaseException) -> ErrorReply:
    """The status and spec code for ``exc`` (500 UNKNOWN for anything unexpected)."""
    for cls in type(exc).__mro__:
        reply = _REPLIES.get(cls)
        if reply is not None:
            return reply
    return ErrorReply(500, "UNKNOWN")


def error_body(errors: Sequence[tuple[str, str, Any]]) -> bytes:
    """The spec's body: ``{"errors": [{"code", "message", "detail"}, ...]}``."""
    return orjson.dumps({"errors": [{"code": c, "message": m, "detail": d} for c, m, d in errors]})
