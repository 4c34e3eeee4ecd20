"""``WWW-Authenticate`` challenges (RFC 7235), as registries send them with a 401.

::

    >>> parse_challenges('Bearer realm="https://auth.docker.io/token",'
    ...                  'service="registry.docker.io",scope="repository:library/busybox:pull"')
    [Challenge(scheme='bearer', params={'realm': 'https://auth.docker.io/token',
               'service': 'registry.docker.io', 'scope': 'repository:library/busybox:pull'})]

A header may carry several challenges (``Basic realm="r", Bearer realm="t"``), and a
scope holds commas inside its quotes, so this is a small scanner rather than a split.
Scheme and parameter names are case-insensitive and come back lower-cased; values keep
their case, with quoted-pair escapes undone. A malformed tail ends the parse: what was
read before it is kept, since a client can still act on a well-formed first challenge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

__all__ = ["Challenge", "parse_challenges"]

# RFC 7230 tchar: the characters a token may hold.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN68 = _TCHAR | frozenset("/=")  # token68 adds "/" and trailing "=" (base64)


class Challenge(NamedTuple):
    scheme: str  # lower-case: "bearer", "basic"
    params: Mapping[str, str]


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def skip_separators(self) -> None:
        while self.peek() in (" ", "\t", ","):
            self.pos += 1

    def token(self, chars: frozenset[str] = _TCHAR) -> str:
        start = self.pos
        while self.peek() and self.peek() in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str | None:
        """A quoted-string starting at the current ``"``; None if it never closes."""
        self.pos += 1
        out: list[str] = []
        while not self.at_end():
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\" and not self.at_end():
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == '"':
                return "".join(out)
            else:
                out.append(c)
        return None

    def param_follows(self) -> bool:
        """Whether ``name =`` starts here (a parameter, not the next challenge's scheme)."""
        save = self.pos
        try:
            if not self.token():
                return False
            self.skip_space()
            return self.peek() == "="
        finally:
            self.pos = save


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one header value, or in several (one per header line)."""
    values = [headers] if isinstance(headers, str) else list(headers)
    found: list[Challenge] = []
    for value in values:
        found.extend(_parse_one(value))
    return found


def _parse_one(text: str) -> list[Challenge]:
    s = _Scanner(text)
    found: list[Challenge] = []
    while True:
        s.skip_separators()
        if s.at_end():
            return found
        scheme = s.token()
        if not scheme:
            return found
        params: dict[str, str] = {}
        found.append(Challenge(scheme.lower(), params))
        if s.peek() not in (" ", "\t"):
            continue  # a scheme alone ("Negotiate"), then "," or the end
        s.skip_space()
        if not s.param_follows():
            if s.peek() and s.peek() != ",":
                # token68 (``Negotiate abc==``): kept under an empty name.
                params[""] = s.token(_TOKEN68)
            continue
        while s.param_follows():
            name = s.token().lower()
            s.skip_space()
            s.pos += 1  # "="
            s.skip_space()
            if s.peek() == '"':
                value = s.quoted()
                if value is None:
                    return found
            else:
                value = s.token()
            params.setdefault(name, value)
            s.skip_space()
            if s.peek() != ",":
                break
            # After a comma comes either this challenge's next parameter or a new scheme.
            s.pos += 1
            s.skip_separators()
        if not s.at_end() and s.peek() != ",":
            rest_start = s.pos
            s.token()
            if s.pos == rest_start:
                return found  # garbage: keep what was read
            s.pos = rest_start
