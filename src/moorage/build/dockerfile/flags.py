"""Instruction flags (``COPY --from=build --chmod=644``): declared per instruction, checked.

A flag is a boolean (``--link``, ``--link=false``), a string (``--from=x``) or a
repeatable string (``--exclude=a --exclude=b``). Unknown flags, repeated single-valued
flags, missing values and non-boolean values for boolean flags are errors::

    flags = Flags(["--from=build", "--link"], {"from": STRING, "link": BOOL})
    flags.string("from")   # 'build'
    flags.flag("link")     # True
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from enum import Enum

__all__ = ["BOOL", "STRING", "STRINGS", "FlagError", "FlagKind", "Flags"]


class FlagKind(Enum):
    BOOL = "bool"
    STRING = "string"
    STRINGS = "strings"


BOOL = FlagKind.BOOL
STRING = FlagKind.STRING
STRINGS = FlagKind.STRINGS


class FlagError(ValueError):
    """A flag the instruction does not take, or takes differently."""


class Flags:
    """The flags given to one instruction, checked against the ones it declares."""

    def __init__(self, given: Sequence[str], declared: Mapping[str, FlagKind]) -> None:
        self._declared = declared
        self._values: dict[str, list[str]] = {}
        for word in given:
            if word == "--":
                break
            self._take(word)

    def _take(self, word: str) -> None:
        if not word.startswith("--"):
            raise FlagError(f"arg should start with -- : {word}")
        spelled, has_value, value = word.partition("=")
        name = spelled[2:]
        kind = self._declared.get(name)
        if kind is None:
            raise FlagError(f"unknown flag: {spelled}{_suggest(name, self._declared)}")
        if name in self._values and kind is not FlagKind.STRINGS:
            raise FlagError(f"duplicate flag specified: {spelled}")
        if kind is FlagKind.BOOL:
            self._values[name] = [_boolean(spelled, value, bool(has_value))]
            return
        if not has_value:
            raise FlagError(f"missing a value on flag: {spelled}")
        self._values.setdefault(name, []).append(value)

    def is_set(self, name: str) -> bool:
        return name in self._values

    @property
    def used(self) -> tuple[str, ...]:
        return tuple(self._values)

    def string(self, name: str, default: str = "") -> str:
        return self._values.get(name, [default])[-1]

    def strings(self, name: str) -> tuple[str, ...]:
        return tuple(self._values.get(name, ()))

    def flag(self, name: str) -> bool:
        """A boolean flag: False unless given (``--link`` or ``--link=true``)."""
        return self._values.get(name, ["false"])[-1] == "true"

    def optional_flag(self, name: str) -> bool | None:
        """A boolean flag, or None when not given."""
        return self.flag(name) if name in self._values else None


def _boolean(spelled: str, value: str, has_value: bool) -> str:
    if has_value and value == "":
        raise FlagError(f"missing a value on flag: {spelled}")
    lowered = value.lower()
    if lowered in ("", "true"):
        return "true"
    if lowered == "false":
        return "false"
    raise FlagError(f"expecting boolean value for flag {spelled}, not: {value}")


def _suggest(name: str, declared: Mapping[str, FlagKind]) -> str:
    close = difflib.get_close_matches(name, list(declared), n=1)
    return f" (did you mean --{close[0]}?)" if close else ""
