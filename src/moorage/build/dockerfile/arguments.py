"""Splitting one logical line into keyword, flags and arguments.

Each instruction has its own argument syntax, decided by the keyword:

==============================  ===================================================
``RUN CMD ENTRYPOINT SHELL``    a JSON array of strings (exec form), else the rest of
                                the line as one string (shell form)
``ADD COPY VOLUME``             a JSON array, else words split at whitespace
``FROM EXPOSE``                 words split at whitespace
``ENV LABEL``                   ``k=v`` words (quotes kept for later expansion), or
                                the legacy ``k v`` (the rest of the line is the value)
``ARG``                         words, quotes kept
``HEALTHCHECK``                 a type word, then like CMD
``USER WORKDIR STOPSIGNAL``     the rest of the line as one string
``MAINTAINER``
``ONBUILD``                     another instruction
==============================  ===================================================

Text that starts with ``[`` but is not a JSON array of strings falls back to the shell
form (``CMD ['a']`` runs ``['a']`` in a shell), as BuildKit does; an array holding
something other than strings is an error. Flags (``--from=x``) are the leading words that
start with ``--``; a lone ``--`` ends them. Nothing here expands variables.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["ArgumentError", "Split", "extract_flags", "parse_words", "split_line"]

_BLANKS = re.compile(r"[\t\v\f\r ]+")

_JSON_OR_SHELL = frozenset({"run", "cmd", "entrypoint", "shell"})
_JSON_OR_WORDS = frozenset({"add", "copy", "volume"})
_WHITESPACE = frozenset({"from", "expose"})
_STRING = frozenset({"maintainer", "stopsignal", "user", "workdir"})
_NAME_VALUE = frozenset({"env", "label"})


class ArgumentError(ValueError):
    """Arguments an instruction cannot have (the parser adds the location)."""


@dataclass(frozen=True)
class Split:
    """A logical line split for its keyword; ``child`` is ONBUILD's instruction."""

    keyword: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json: bool = False
    child: Split | None = None


def split_line(line: str, escape: str) -> Split:
    """Split a logical line; raises :class:`ArgumentError`."""
    parts = _BLANKS.split(line.strip(), maxsplit=1)
    keyword = parts[0]
    rest, flags = extract_flags(parts[1], escape) if len(parts) == 2 else ("", [])
    rest = rest.strip()
    kind = keyword.lower()
    if kind == "onbuild":
        child = split_line(rest, escape) if rest else None
        return Split(keyword, tuple(flags), (), child=child)
    args, is_json = _arguments(kind, rest, escape)
    return Split(keyword, tuple(flags), tuple(args), is_json)


def _arguments(kind: str, rest: str, escape: str) -> tuple[list[str], bool]:
    if kind in _JSON_OR_SHELL:
        return _json_or_shell(rest)
    if kind in _JSON_OR_WORDS:
        array = _json_array(rest)
        return (array, True) if array is not None else (_words(rest), False)
    if kind in _WHITESPACE:
        return _words(rest), False
    if kind in _STRING:
        return ([rest] if rest else []), False
    if kind in _NAME_VALUE:
        return _name_values(rest, kind.upper(), escape), False
    if kind == "arg":
        return parse_words(rest, escape), False
    if kind == "healthcheck":
        return _healthcheck(rest)
    return [], False  # an unknown keyword: reported when the instruction is built


def _json_or_shell(rest: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    array = _json_array(rest)
    return (array, True) if array is not None else ([rest], False)


def _json_array(rest: str) -> list[str] | None:
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise ArgumentError(
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    return value


def _reject_constant(name: str) -> object:
    raise ValueError(f"not JSON: {name}")  # Go's JSON has no NaN or Infinity


def _words(rest: str) -> list[str]:
    return _BLANKS.split(rest) if rest else []


def _name_values(rest: str, keyword: str, escape: str) -> list[str]:
    """``k=v`` words as (key, value, "=") triples; the legacy ``k v`` as (key, value, "")."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _BLANKS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ArgumentError(f"{keyword} must have two arguments")
        return [parts[0], parts[1], ""]
    out: list[str] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ArgumentError(f'can\'t find = in "{word}", it must be of the form: name=value')
        out += [key, value, "="]
    return out


def _healthcheck(rest: str) -> tuple[list[str], bool]:
    parts = rest.split(maxsplit=1)
    if not parts:
        return [], False
    command, is_json = _json_or_shell(parts[1] if len(parts) == 2 else "")
    return [parts[0], *command], is_json


def parse_words(rest: str, escape: str) -> list[str]:
    """Words split at unquoted whitespace, quotes and escapes kept for later expansion."""
    words: list[str] = []
    buf: list[str] = []
    quote = ""  # the open quote character, or "" outside quotes
    started = blank_ok = False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    break  # a lone escape at the end is dropped
                buf.append(ch)
                i += 1
                ch = rest[i]
            buf.append(ch)
        elif ch.isspace():
            if started and (blank_ok or buf):
                words.append("".join(buf))
            buf, started, blank_ok = [], False, False
        else:
            started = True
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == n:
                    break
                buf.append(ch)
                i += 1
                ch = rest[i]
            buf.append(ch)
        i += 1
    if started and (blank_ok or buf):
        words.append("".join(buf))
    return words


def extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """The leading ``--flag[=value]`` words (quotes and escapes removed) and the rest."""
    flags: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if not line.startswith("--", i):
            return line[i:], flags
        word, i, quoted = _flag_word(line, i, escape)
        if word == "--":
            return line[i:], flags
        if quoted or word:
            flags.append(word)
    return "", flags


def _flag_word(line: str, i: int, escape: str) -> tuple[str, int, bool]:
    """One flag word from ``i``: its text, where it ended, whether it had quotes."""
    buf: list[str] = []
    quote = ""
    quoted = False
    n = len(line)
    while i < n:
        ch = line[i]
        if not quote and ch.isspace():
            break
        i += 1
        if not quote and ch in "'\"":
            quote, quoted = ch, True
            continue
        if quote and ch == quote:
            quote = ""
            continue
        if ch == escape:
            if i == n:
                break
            ch = line[i]
            i += 1
        buf.append(ch)
    return "".join(buf), i, quoted
