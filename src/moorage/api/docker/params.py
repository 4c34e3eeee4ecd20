"""Query parameters as the Docker Engine API spells them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from moorage.errors import InvalidArgument

_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "none", "off", "f", "n"})


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """``1``/``true``/``yes`` (any case) is true, ``0``/``false``/``no`` false; absent or
    empty is ``default``. Anything else is refused, where dockerd would take it for
    true: ``?all=maybe`` is more likely a mistake than a yes."""
    value = request.query.get(name)
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidArgument(f"invalid value for {name}: {value!r}: want a boolean (1 or 0)")


def integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r}: want an integer") from None


def filters(request: web.Request) -> dict[str, list[str]]:
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid filters: {raw}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid filters: {raw}")
    # Docker accepts {"key": ["v"]} and the older {"key": {"v": true}}.
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


async def json_body(request: web.Request, what: str) -> dict[str, Any]:
    """The request's JSON object; ``{}`` for an empty body (dockerd accepts one).
    Errors name ``what`` ("volume create request", ...)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid {what}: body is not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise InvalidArgument(f"invalid {what}: want a JSON object, not {raw[:100]!r}")
    return body
