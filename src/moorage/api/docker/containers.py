"""Containers routes (Docker Engine API)."""

from __future__ import annotations

from moorage.api.docker.server import Routes

routes = Routes()
