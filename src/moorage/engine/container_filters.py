"""``docker ps --filter``: which containers a filter set keeps.

Filters arrive as Docker sends them: ``{"status": ["running"], "label": ["a=b"]}``
(or the legacy ``{"status": {"running": true}}``). Unknown keys are an error, as in
dockerd, naming the key.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from moorage.engine.container_record import Container, parse_rfc3339
from moorage.errors import InvalidArgument

KNOWN = frozenset(
    {
        "id",
        "name",
        "label",
        "status",
        "exited",
        "ancestor",
        "before",
        "since",
        "health",
        "volume",
        "is-task",
        "network",
        "publish",
        "expose",
    }
)
STATUSES = frozenset({"created", "restarting", "running", "removing", "paused", "exited", "dead"})


def normalise(filters: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in filters.items():
        if key not in KNOWN:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            raise InvalidArgument(f"invalid filter '{key}': want a list of strings")
    for status in out.get("status", []):
        if status not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={status}'")
    for code in out.get("exited", []):
        if not code.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid filter 'exited={code}'")
    return out


def labels_match(labels: Mapping[str, str], specs: Iterable[str]) -> bool:
    for spec in specs:
        key, sep, value = spec.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


class ContainerFilter:
    def __init__(self, filters: Mapping[str, Any], service: Any) -> None:
        self.f = normalise(filters)
        self.service = service
        self.wants_stopped = bool(
            self.f.get("exited") or set(self.f.get("status", [])) - {"running", "paused"}
        )
        self._before = self._reference_time("before")
        self._since = self._reference_time("since")
        self._ancestors: set[str] | None = None
        if "ancestor" in self.f:
            self._ancestors = set()
            for ref in self.f["ancestor"]:
                try:
                    self._ancestors.add(service.images.resolve(ref).id)
                except Exception:  # an unknown image matches nothing, as in Docker
                    continue

    def _reference_time(self, key: str) -> float | None:
        refs = self.f.get(key)
        if not refs:
            return None
        return parse_rfc3339(self.service.get(refs[0]).created)

    def __call__(self, c: Container) -> bool:
        f = self.f
        if "id" in f and not any(c.id.startswith(v) for v in f["id"]):
            return False
        if "name" in f and not any(
            fnmatch.fnmatch(c.name, f"*{v.removeprefix('/')}*") for v in f["name"]
        ):
            return False
        if "label" in f and not labels_match(c.config.get("Labels") or {}, f["label"]):
            return False
        if "status" in f and c.state.status not in f["status"]:
            return False
        if "exited" in f and (
            c.running or c.state.status == "created" or str(c.state.exit_code) not in f["exited"]
        ):
            return False
        if self._ancestors is not None and c.image_id not in self._ancestors:
            return False
        created = parse_rfc3339(c.created)
        if self._before is not None and created >= self._before:
            return False
        if self._since is not None and created <= self._since:
            return False
        if "health" in f:
            status = (c.state.health or {}).get("Status", "none")
            if status not in f["health"]:
                return False
        if "volume" in f and not any(
            m.name in f["volume"] or m.destination in f["volume"] for m in c.mounts
        ):
            return False
        return "is-task" not in f or f["is-task"] == ["false"]
