"""``.env`` and ``env_file`` files: ``KEY=VALUE`` lines, as docker compose reads them.

- blank lines and lines starting with ``#`` are skipped; ``export KEY=VALUE`` is allowed;
- an unquoted value is trimmed, loses a `` #`` comment, and is interpolated (from the
  keys above it, then the lookup); ``'single'`` quotes keep the text as it is;
  ``"double"`` quotes understand ``\\n``, ``\\t``, ``\\"``, ``\\\\`` and interpolation, and may
  span lines;
- a line with a key alone (``KEY``) takes KEY from the lookup, and is left out when
  the lookup does not know it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from moorage.compose.interpolate import InterpolationError, Lookup, interpolate
from moorage.errors import InvalidArgument, NotFound

__all__ = ["as_lookup", "parse_env_file", "parse_env_text"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_env_file(path: str, lookup: Lookup) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise NotFound(f"env file {path} not found") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read env file {path}: {exc.strerror}") from None
    return parse_env_text(text, lookup, path)


def parse_env_text(text: str, lookup: Lookup, source: str = "env file") -> dict[str, str]:
    """The variables of one file's text. Example:
    ``parse_env_text("A=1\\nB=${A}2", {}.get) == {"A": "1", "B": "12"}``."""
    out: dict[str, str] = {}

    def chained(name: str) -> str | None:
        return out[name] if name in out else lookup(name)

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        key_match = _KEY.match(line)
        if key_match is None:
            raise InvalidArgument(f"{source}:{number}: unexpected character in {line!r}")
        key, rest = key_match.group(), line[key_match.end() :].lstrip()
        if not rest:
            value = lookup(key)
            if value is not None:
                out[key] = value
            continue
        if rest[0] != "=":
            raise InvalidArgument(f"{source}:{number}: unexpected character in {line!r}")
        raw = rest[1:].lstrip()
        try:
            if raw.startswith("'") or raw.startswith('"'):
                quote = raw[0]
                body = raw[1:]
                while not _closed(body, quote):
                    if i >= len(lines):
                        raise InvalidArgument(f"{source}:{number}: unterminated quoted value")
                    body += "\n" + lines[i]
                    i += 1
                end = _closing_index(body, quote)
                inner = body[:end]
                if quote == "'":
                    out[key] = inner
                else:
                    out[key] = interpolate(_unescape(inner), chained)
            else:
                comment = raw.find(" #")
                if comment >= 0:
                    raw = raw[:comment]
                out[key] = interpolate(raw.strip(), chained)
        except InterpolationError as exc:
            raise InvalidArgument(f"{source}:{number}: {key}: {exc.detail}") from None
    return out


def _closing_index(body: str, quote: str) -> int:
    i = 0
    while i < len(body):
        if quote == '"' and body[i] == "\\":
            i += 2
            continue
        if body[i] == quote:
            return i
        i += 1
    return -1


def _closed(body: str, quote: str) -> bool:
    return _closing_index(body, quote) >= 0


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            nxt = text[i + 1]
            # \$ stays escaped for interpolation to see as a literal dollar
            out.append("$$" if nxt == "$" else _ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def as_lookup(*layers: Mapping[str, str]) -> Lookup:
    """A lookup that tries each mapping in turn (the first wins)."""

    def lookup(name: str) -> str | None:
        for layer in layers:
            if name in layer:
                return layer[name]
        return None

    return lookup
