"""Several compose files merged into one, by the Compose Specification's rules.

Files are in canonical form (:mod:`moorage.compose.schema`) and merged in order,
each over what came before:

- mappings merge key by key (``environment``, ``labels``, ``depends_on``, service
  ``networks``, ``build``, ``deploy``, top-level ``networks`` and ``volumes``...);
- scalars are replaced;
- sequences are appended, without repeating an item (``dns``, ``expose``,
  ``profiles``, ``env_file``...), except ``command``, ``entrypoint`` and
  ``healthcheck.test``, which are replaced;
- ``ports`` are unique by (host_ip, target, published, protocol) and ``volumes`` by
  target: a later entry with the same key replaces the earlier one;
- ``!reset`` removes a key, ``!override`` replaces it whole.

Example: merging ``{"services": {"a": {"command": ["x"], "dns": ["1.1.1.1"]}}}`` with
``{"services": {"a": {"command": ["y"], "dns": ["8.8.8.8"]}}}`` gives
``{"services": {"a": {"command": ["y"], "dns": ["1.1.1.1", "8.8.8.8"]}}}``.
"""

from __future__ import annotations

import copy
from typing import Any

from moorage.compose.schema import Override, Reset

__all__ = ["merge", "strip_tags"]

_REPLACED = frozenset({"command", "entrypoint", "test"})


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged over ``base`` (neither is changed)."""
    return _merge_mapping(copy.deepcopy(base), override, "")


def _merge_mapping(base: dict[str, Any], override: dict[str, Any], key_path: str) -> dict[str, Any]:
    for key, value in override.items():
        path = f"{key_path}.{key}" if key_path else key
        if isinstance(value, Reset):
            base.pop(key, None)
        elif isinstance(value, Override):
            base[key] = copy.deepcopy(strip_tags(value.value))
        elif key not in base or base[key] is None:
            base[key] = copy.deepcopy(value)
        else:
            base[key] = _merge_value(base[key], value, key, path)
    return base


def _merge_value(old: Any, new: Any, key: str, path: str) -> Any:
    if new is None:
        return old
    if key in _REPLACED:
        return copy.deepcopy(new)
    if isinstance(old, dict) and isinstance(new, dict):
        return _merge_mapping(old, new, path)
    if isinstance(old, list) and isinstance(new, list):
        if _is_service_key(path, "ports"):
            return _unique(old, new, _port_key)
        if _is_service_key(path, "volumes"):
            return _unique(old, new, lambda v: v.get("target"))
        out = list(old)
        for item in new:
            if item not in out:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(new)


def _is_service_key(path: str, key: str) -> bool:
    parts = path.split(".")
    return len(parts) == 3 and parts[0] == "services" and parts[2] == key


def _port_key(port: dict[str, Any]) -> tuple[Any, ...]:
    return (port.get("host_ip"), port.get("target"), port.get("published"), port.get("protocol"))


def _unique(old: list[Any], new: list[Any], key: Any) -> list[Any]:
    out = list(old)
    for item in new:
        index = next((i for i, o in enumerate(out) if key(o) == key(item)), None)
        if index is None:
            out.append(copy.deepcopy(item))
        else:
            out[index] = copy.deepcopy(item)
    return out


def strip_tags(tree: Any) -> Any:
    """The tree without ``!reset`` keys and ``!override`` wrappers (a single file's
    tags, or those left once everything is merged)."""
    if isinstance(tree, Override):
        return strip_tags(tree.value)
    if isinstance(tree, dict):
        return {k: strip_tags(v) for k, v in tree.items() if not isinstance(v, Reset)}
    if isinstance(tree, list):
        return [strip_tags(v) for v in tree if not isinstance(v, Reset)]
    return tree
