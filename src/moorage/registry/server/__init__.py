"""The registry server: the OCI distribution API (v1.1) over a Moorage content store.

Public face::

    from moorage.registry.server import ServerConfig, serve, collect
    asyncio.run(serve(ServerConfig(root=Path("/srv/registry"), addr="0.0.0.0:5000")))
    collect("/srv/registry", dry_run=True).removed_blobs

Modules, each owning one thing: ``app`` (the handler and ``serve``), ``paths`` (the URL
layout), ``names`` (names, tags, digests), ``errors`` (error classes and their one
status table), ``routes_manifests``, ``routes_blobs``, ``routes_uploads``,
``routes_discovery`` (the endpoints), ``uploads`` (upload sessions), ``storage`` and
``metadata`` (blobs and names on disk), ``ranges`` (byte ranges), ``auth``,
``htpasswd``, ``tokens`` (who may do what), ``gc`` (``moor registry gc``), ``proxy``
(the pull-through cache, ``--proxy``). See docs/registry.md for the design. Names are
loaded on first use, so that ``gc`` does not import aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GCReport": "moorage.registry.server.gc",
    "Registry": "moorage.registry.server.app",
    "ServerConfig": "moorage.registry.server.config",
    "build_app": "moorage.registry.server.app",
    "collect": "moorage.registry.server.gc",
    "serve": "moorage.registry.server.app",
}

__all__ = ["GCReport", "Registry", "ServerConfig", "build_app", "collect", "serve"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'moorage.registry.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
