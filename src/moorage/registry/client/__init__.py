"""The registry client: resolve references, authorize, pull and push (OCI distribution).

Modules, each owning one part:

- ``resolve``      references to registry hosts, endpoints and repositories; insecure hosts
- ``challenge``    ``WWW-Authenticate`` parsing
- ``auth``         Docker's token flow and basic auth, tokens cached per scope
- ``credentials``  the credentials record and the docker-config.json-shaped file
- ``backoff``      the retry policy
- ``transport``    HTTP: scheme, TLS, authorization and retries per request
- ``manifests``    manifest fetch (both media type families, size and digest checks), put
- ``blobs``        resumable verified downloads into the content store; uploads, mounts
- ``pull``, ``push``  the two transfers; ``progress`` their reports; ``sources`` the
  labels that let a push mount a blob from another repository
- ``client``       :class:`RegistryClient`, the facade

Names are loaded on first use: the CLI reads credentials without paying for aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Backoff": "moorage.registry.client.backoff",
    "Challenge": "moorage.registry.client.challenge",
    "CredentialStore": "moorage.registry.client.credentials",
    "Credentials": "moorage.registry.client.credentials",
    "DigestMismatch": "moorage.registry.client.errors",
    "HostPolicy": "moorage.registry.client.resolve",
    "KeyedLocks": "moorage.registry.client.pull",
    "ManifestTooLarge": "moorage.registry.client.errors",
    "Progress": "moorage.registry.client.progress",
    "PullResult": "moorage.registry.client.pull",
    "PushResult": "moorage.registry.client.push",
    "RegistryClient": "moorage.registry.client.client",
    "RegistryNotFound": "moorage.registry.client.errors",
    "RegistryNotSupported": "moorage.registry.client.errors",
    "RegistryRejected": "moorage.registry.client.errors",
    "RegistryUnavailable": "moorage.registry.client.errors",
    "Target": "moorage.registry.client.resolve",
    "Unauthorized": "moorage.registry.client.errors",
    "normalize_server": "moorage.registry.client.resolve",
    "parse_challenges": "moorage.registry.client.challenge",
    "resolve": "moorage.registry.client.resolve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'moorage.registry.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
