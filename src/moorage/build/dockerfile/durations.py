"""Go's duration syntax (``1m30s``, ``1.5h``, ``250ms``), which HEALTHCHECK flags use.

``parse_duration("1m30s") == 90_000_000_000``: the result is in nanoseconds, as the image
config stores it. Fractions of a nanosecond are dropped, as Go does.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["DurationError", "parse_duration"]

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_MAX = 2**63 - 1


class DurationError(ValueError):
    """Text that is not a Go duration."""


def parse_duration(text: str) -> int:
    """Nanoseconds in ``text``; raises :class:`DurationError`."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0
    if not body:
        raise DurationError(f'invalid duration "{text}"')
    total = Decimal(0)
    at = 0
    while at < len(body):
        part = _PART.match(body, at)
        if part is None:
            raise DurationError(f'invalid duration "{text}"')
        total += Decimal(part[1]) * _UNITS[part[2]]
        at = part.end()
    if total > _MAX:
        raise DurationError(f'invalid duration "{text}"')
    nanos = int(total)
    return -nanos if text.startswith("-") else nanos
