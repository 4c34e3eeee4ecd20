"""``.dockerignore``: which files of the build context a build may see.

This module owns the ignore-file format and Docker's matching rules (moby's
patternmatcher), also used by ``COPY --exclude``:

- one pattern per line; a line starting with ``#`` is a comment; blank lines are
  skipped; surrounding blanks are removed; a pattern is cleaned like a path (``./a/``
  is ``a``, ``a/../b`` is ``b``) and a leading ``/`` is dropped;
- ``*`` matches any run of characters but ``/``, ``?`` one character but ``/``,
  ``[a-z]`` / ``[^a-z]`` a class, ``\\`` escapes the next character, ``**`` any number
  of directories (``**/x``, ``a/**``, ``a/**/b``);
- a pattern matches a path when it matches the path or any of its parent directories;
- ``!pattern`` is an exception that includes again what it matches; the last pattern
  that matches decides.

A context walker can skip a whole directory when :meth:`PatternMatcher.matches` says it
is excluded *and* :meth:`PatternMatcher.may_contain_included` says no exception could
bring back anything below it::

    m = PatternMatcher(["docs", "!docs/README.md", "*.tmp"])
    m.matches("docs/guide.md")          # True: excluded through its parent "docs"
    m.matches("docs/README.md")         # False: the exception includes it again
    m.may_contain_included("docs")     # True: walk it, README.md may be inside
    m.may_contain_included("build")    # True: not excluded at all

Which file applies: ``<Dockerfile>.dockerignore`` next to the Dockerfile (for
``build/app.Dockerfile``, ``build/app.Dockerfile.dockerignore``) when it exists, else
``.dockerignore`` at the root of the context (:func:`ignore_file_for`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from moorage.errors import InvalidArgument

__all__ = [
    "IgnorePattern",
    "PatternMatcher",
    "clean_path",
    "ignore_file_for",
    "load_matcher",
    "read_patterns",
]


def clean_path(path: str) -> str:
    """Go's ``path.Clean``: ``./a//b/../c/`` is ``a/c``; the empty path is ``.``."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment != "..":
            parts.append(segment)
        elif parts and parts[-1] != "..":
            parts.pop()
        elif not rooted:
            parts.append("..")
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_patterns(text: str | bytes) -> list[str]:
    """The patterns of an ignore file, cleaned; ``!`` stays in front of exceptions."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    patterns: list[str] = []
    for number, raw in enumerate(text.split("\n")):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        exception = pattern.startswith("!")
        if exception:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if exception else pattern)
    return patterns


@dataclass(frozen=True)
class IgnorePattern:
    """One compiled pattern. ``kind`` is how it matches (as moby's patternmatcher)."""

    text: str  # cleaned, without the "!"
    exception: bool
    kind: str  # "exact", "prefix", "suffix" or "regex"
    regex: re.Pattern[str] | None = None

    def matches(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def compile_pattern(pattern: str) -> IgnorePattern:
    """Compile one pattern (``!`` allowed); :class:`InvalidArgument` when malformed."""
    text = pattern.strip()
    exception = text.startswith("!")
    if exception:
        text = text[1:].strip()
        if not text:
            raise InvalidArgument('illegal exclusion pattern: "!"')
    text = clean_path(text)
    kind, regex = _Translator(text).translate()
    return IgnorePattern(text, exception, kind, regex)


class _Translator:
    """Turns a pattern into a regular expression, noting the cheaper ways to match it."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out = ["^"]
        self.kind = "exact"

    def translate(self) -> tuple[str, re.Pattern[str] | None]:
        while self.i < len(self.p):
            first = self.i == 0
            ch = self.p[self.i]
            self.i += 1
            if ch == "*" and self.p.startswith("*", self.i):
                self.double_star(first)
            elif ch == "*":
                self.regex("[^/]*")
            elif ch == "?":
                self.regex("[^/]")
            elif ch == "\\":
                self.escape()
            elif ch == "[":
                self.regex(self.char_class())
            elif ch == "]":
                self.regex(r"\]")
            else:
                self.out.append(re.escape(ch))
        if self.kind != "regex":
            return self.kind, None
        return self.kind, re.compile("".join(self.out) + r"\Z")

    def regex(self, text: str) -> None:
        self.out.append(text)
        self.kind = "regex"

    def double_star(self, first: bool) -> None:
        self.i += 1
        if self.p.startswith("/", self.i):
            self.i += 1
        if self.i == len(self.p):
            if self.kind == "exact":
                self.kind = "prefix"
            else:
                self.regex(".*")
        else:
            self.regex("(.*/)?")
        if first:
            self.kind = "suffix"

    def escape(self) -> None:
        if self.i == len(self.p):
            raise InvalidArgument(f"syntax error in pattern: {self.p}")
        self.regex(re.escape(self.p[self.i]))
        self.i += 1

    def char_class(self) -> str:
        """``[...]`` with Go's rules: ``^`` negates, ``\\`` escapes, ranges need lo <= hi."""
        negate = self.p.startswith("^", self.i)
        if negate:
            self.i += 1
        items: list[str] = []
        while not (self.p.startswith("]", self.i) and items):
            low = self.class_char()
            high = low
            if self.p.startswith("-", self.i):
                self.i += 1
                high = self.class_char()
            if high < low:
                raise InvalidArgument(f"syntax error in pattern: {self.p}")
            items.append(re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}")
        self.i += 1
        return "[" + ("^" if negate else "") + "".join(items) + "]"

    def class_char(self) -> str:
        if self.i >= len(self.p) or self.p[self.i] in "-]":
            raise InvalidArgument(f"syntax error in pattern: {self.p}")
        if self.p[self.i] == "\\":
            self.i += 1
            if self.i >= len(self.p):
                raise InvalidArgument(f"syntax error in pattern: {self.p}")
        ch = self.p[self.i]
        self.i += 1
        if self.i >= len(self.p):
            raise InvalidArgument(f"syntax error in pattern: {self.p}")
        return ch


class PatternMatcher:
    """Ordered patterns; the last one that matches a path (or a parent) decides."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(compile_pattern(p) for p in patterns if p.strip())
        self.has_exceptions = any(p.exception for p in self.patterns)

    def matches(self, path: str) -> bool:
        """True when ``path`` (relative to the context, ``/``-separated) is excluded."""
        if not self.patterns:
            return False
        path = clean_path(path.lstrip("/"))
        if path == ".":
            return False  # the context itself is never excluded
        parts = path.split("/")
        parents = ["/".join(parts[: n + 1]) for n in range(len(parts) - 1)]
        excluded = False
        for pattern in self.patterns:
            if pattern.exception != excluded:
                continue  # it could not change the answer
            if pattern.matches(path) or any(pattern.matches(p) for p in parents):
                excluded = not pattern.exception
        return excluded

    def may_contain_included(self, directory: str) -> bool:
        """False only when nothing below ``directory`` can be included.

        Conservative: True means "walk it and ask :meth:`matches` for each entry".
        """
        if not self.matches(directory):
            return True
        parts = clean_path(directory.lstrip("/")).split("/")
        return any(_could_reach(p, parts) for p in self.patterns if p.exception)


def _could_reach(pattern: IgnorePattern, directory: list[str]) -> bool:
    """Whether ``pattern`` could match ``directory``, a parent of it or a path below it."""
    segments = pattern.text.split("/")
    for depth, name in enumerate(directory):
        if depth >= len(segments):
            return True  # it matches a parent: everything below it follows
        segment = segments[depth]
        if "**" in segment:
            return True
        try:
            if not compile_pattern(segment).matches(name):
                return False
        except InvalidArgument:
            return True  # an escaped "/" split the pattern: do not prune
    return True


def ignore_file_for(context: Path, dockerfile: Path | None = None) -> Path | None:
    """The ignore file that applies: next to the Dockerfile, else in the context root."""
    if dockerfile is not None:
        specific = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if specific.is_file():
            return specific
    general = context / ".dockerignore"
    return general if general.is_file() else None


def load_matcher(context: Path, dockerfile: Path | None = None) -> PatternMatcher:
    """The matcher for a build context (empty when there is no ignore file)."""
    found = ignore_file_for(context, dockerfile)
    if found is None:
        return PatternMatcher(())
    try:
        text = found.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {found}: {exc.strerror}") from exc
    return PatternMatcher(read_patterns(text))
