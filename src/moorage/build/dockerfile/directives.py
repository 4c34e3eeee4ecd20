"""Parser directives: ``# syntax=``, ``# escape=`` and ``# check=`` at the top of a Dockerfile.

Directives are comment lines of the form ``# name=value`` before anything else: the first
line that is not one (an instruction, a blank line, any other comment, an unknown name)
ends them, and a directive-shaped line after that is an ordinary comment. Names are
case-insensitive; each may appear once. ``escape`` is ``\\`` (the default) or a backtick;
``check`` configures the linter::

    # check=skip=JSONArgsRecommended,StageNameCasing;error=true

``syntax`` is recorded and otherwise ignored: Moorage has one Dockerfile frontend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from moorage.build.dockerfile.source import DockerfileError

__all__ = ["CheckOptions", "Directive", "DirectiveReader", "Directives", "parse_check_options"]

KNOWN = ("syntax", "escape", "check")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[ \t\n\f\r]*=[ \t\n\f\r]*(.+?)[ \t\n\f\r]*\Z")


@dataclass(frozen=True)
class Directive:
    name: str  # lower-case
    value: str
    line: int


@dataclass(frozen=True)
class CheckOptions:
    """The ``check`` directive: which lint rules to skip, and whether warnings fail."""

    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False
    experimental: frozenset[str] = frozenset()

    def skips(self, rule: str) -> bool:
        return self.skip_all or rule in self.skip


@dataclass(frozen=True)
class Directives:
    escape: str = "\\"
    syntax: str | None = None
    check: CheckOptions = CheckOptions()
    found: tuple[Directive, ...] = ()


class DirectiveReader:
    """Feeds lines in order; recognises directives until the first line that is not one."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.done = False
        self.found: list[Directive] = []

    def feed(self, line: str, lineno: int) -> bool:
        """True when ``line`` (leading blanks removed) is a directive."""
        if self.done:
            return False
        directive = self._match(line, lineno)
        if directive is None:
            self.done = True
            return False
        if any(d.name == directive.name for d in self.found):
            raise DockerfileError(
                self.file, lineno, f"only one {directive.name} parser directive can be used"
            )
        if directive.name == "escape" and directive.value not in ("\\", "`"):
            raise DockerfileError(
                self.file,
                lineno,
                f"invalid escape token '{directive.value}' does not match ` or \\",
            )
        self.found.append(directive)
        return True

    def _match(self, line: str, lineno: int) -> Directive | None:
        if not line.startswith("#"):
            return None
        found = _DIRECTIVE.match(line[1:].lstrip())
        if found is None or found[1].lower() not in KNOWN:
            return None
        return Directive(found[1].lower(), found[2], lineno)

    def directives(self) -> Directives:
        values = {d.name: d for d in self.found}
        check = CheckOptions()
        if "check" in values:
            d = values["check"]
            try:
                check = parse_check_options(d.value.split(" ", 1)[0])
            except ValueError as exc:
                raise DockerfileError(self.file, d.line, str(exc)) from None
        syntax = values["syntax"].value.split(" ", 1)[0] if "syntax" in values else None
        escape = values["escape"].value if "escape" in values else "\\"
        return Directives(escape, syntax, check, tuple(self.found))


def parse_check_options(text: str) -> CheckOptions:
    """``skip=A,B;error=true;experimental=all`` (ValueError when malformed)."""
    options = CheckOptions()
    text = text.strip()
    if not text:
        return options
    for part in text.split(";", 2):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ValueError(f'invalid check option "{part}"')
        if key == "skip":
            names = frozenset(v.strip() for v in value.split(","))
            options = replace(options, skip=names, skip_all=value == "all")
        elif key == "experimental":
            names = frozenset(v.strip() for v in value.split(","))
            options = replace(options, experimental=names)
        elif key == "error":
            options = replace(options, error=_parse_bool(value, part))
        else:
            raise ValueError(f'invalid check option "{key}"')
    return options


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _parse_bool(value: str, part: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f'failed to parse check option "{part}": not a boolean')
