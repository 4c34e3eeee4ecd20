"""What a registry's refusals become: subclasses of the closed set in :mod:`moorage.errors`.

::

    PermissionDenied
    └── Unauthorized           401/403 from a registry or its token server
    NotFound
    └── RegistryNotFound       404: no such repository, manifest or blob
    InvalidArgument
    ├── DigestMismatch         content that does not hash to the digest it was asked by
    ├── ManifestTooLarge       a manifest over 4 MiB
    └── RegistryRejected       any other 4xx: the registry refused what we sent
    NotSupported
    └── RegistryNotSupported   schema 1 manifests, artifacts that are not images, 405
    Unavailable
    └── RegistryUnavailable    connection errors, 429 and 5xx after the retries

Messages name the input first and then what the registry said, from the
distribution spec's error body (``{"errors": [{"code", "message", "detail"}]}``)
when there is one: ``127.0.0.1:5000/app:1: manifest unknown``.
"""

from __future__ import annotations

import json

from moorage.errors import (
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    PermissionDenied,
    Unavailable,
)

__all__ = [
    "DigestMismatch",
    "ManifestTooLarge",
    "RegistryNotFound",
    "RegistryNotSupported",
    "RegistryRejected",
    "RegistryUnavailable",
    "Unauthorized",
    "error_for_status",
    "registry_message",
]


class Unauthorized(PermissionDenied):
    """The registry or its token server refused our credentials (or their absence)."""


class RegistryNotFound(NotFound):
    """The repository, tag, manifest or blob does not exist on the registry."""


class DigestMismatch(InvalidArgument):
    """Content from the registry does not hash to the digest it was fetched by."""


class ManifestTooLarge(InvalidArgument):
    """A manifest over the 4 MiB that registries accept (and we read)."""


class RegistryRejected(InvalidArgument):
    """The registry refused a request as malformed (any other 4xx)."""


class RegistryNotSupported(NotSupported):
    """Something valid that this client does not do, or the registry does not."""


class RegistryUnavailable(Unavailable):
    """The registry could not be reached or kept failing (5xx, 429) through the retries."""


def registry_message(status: int, body: bytes) -> str:
    """What the registry said: the spec's error messages joined, or the body's start."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list):
            parts = []
            for item in errors:
                if not isinstance(item, dict):
                    continue
                message = item.get("message") or item.get("code") or ""
                if isinstance(message, str) and message:
                    parts.append(message.lower() if message.isupper() else message)
            if parts:
                return "; ".join(parts)
        # Token servers answer with OAuth2's {"error": ..., "error_description": ...}.
        for key in ("details", "error_description", "error", "message"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
    text = body[:200].decode("utf-8", "replace").strip()
    return text or _BODILESS.get(status, f"http {status}")


# What a registry's status means when it sends no body (a HEAD's answer never has one).
_BODILESS = {
    401: "unauthorized: authentication required",
    403: "denied: requested access to the resource is denied",
    404: "not found",
    429: "too many requests",
}


def error_for_status(status: int, what: str, body: bytes = b"") -> MoorageError:
    """The error for a registry's answer ``status`` to a request about ``what``."""
    message = f"{what}: {registry_message(status, body)}"
    if status in (401, 403):
        return Unauthorized(message)
    if status == 404:
        return RegistryNotFound(message)
    if status in (405, 501):
        return RegistryNotSupported(message)
    if status == 413:
        return ManifestTooLarge(message)
    if status == 429 or status >= 500:
        return RegistryUnavailable(message)
    if 400 <= status < 500:
        return RegistryRejected(message)
    return MoorageError(f"{what}: unexpected http {status}")
