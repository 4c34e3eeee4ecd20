"""Query parameters as the Docker Engine API spells them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from moorage.errors import InvalidArgument


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """``1``/``true``/``yes`` (any case) is true; absent is ``default``."""
    value = request.query.get(name)
    if value is None or value == "":
        return default
    return value.lower() in ("1", "true", "yes")


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
