"""Heredocs in RUN, COPY and ADD: recognising ``<<EOF`` words and what they mean.

A heredoc word is ``[fd]<<[-]NAME``: ``-`` strips leading tabs from the body and from the
terminator line; quoting any part of the name (``<<"EOF"``, ``<<'EOF'``, ``<<E"O"F``)
means the body is not expanded. Several may follow one another on one line; their bodies
come after the line in the same order::

    COPY <<one.txt <<two.txt /dest/
    first
    one.txt
    second
    two.txt

This module finds the words (``heredocs_in_line``) and parses one (``parse_heredoc``);
``parser`` reads the bodies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moorage.build.dockerfile.words import ExpansionError, ShellLexer

__all__ = ["Heredoc", "chomp", "heredocs_in_line", "parse_heredoc"]

_WORD = re.compile(r"([0-9]*)<<(-?)[ \t\n\f\r]*([^<]*)\Z")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)

_NAME = ShellLexer(skip_unset=True)
_NAME_RAW = ShellLexer(skip_unset=True, raw_quotes=True)
_LINE = ShellLexer(skip_unset=True, raw_quotes=True, raw_escapes=True)


@dataclass(frozen=True)
class Heredoc:
    """One heredoc: its terminator name, body (as in the file) and options."""

    name: str
    content: str = ""
    expand: bool = True  # False when any part of the name was quoted
    chomp: bool = False  # "<<-": leading tabs are removed
    fd: int = 0  # "3<<EOF" feeds file descriptor 3 (RUN only)

    @property
    def text(self) -> str:
        """The body as the step sees it: leading tabs removed for ``<<-``."""
        return chomp(self.content) if self.chomp else self.content


def chomp(text: str) -> str:
    """Remove the leading tabs of every line."""
    return _LEADING_TABS.sub("", text)


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a word introduces, or None when it is not one.

    Raises :class:`ExpansionError` for a name with an open quote (``<<'EOF``).
    """
    found = _WORD.match(word)
    if found is None or not found[3]:
        return None
    rest = found[3]
    names = _NAME.split(rest, {})
    if len(names) != 1:
        return None
    raw = _NAME_RAW.split(rest, {})
    if len(raw) != 1:
        raise ExpansionError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    quoted = _quote_count(raw[0]) != _quote_count(names[0])
    return Heredoc(names[0], expand=not quoted, chomp=found[2] == "-", fd=int(found[1] or 0))


def heredocs_in_line(line: str) -> tuple[Heredoc, ...]:
    """Every heredoc word of a logical line, in order (bodies empty)."""
    try:
        words = _LINE.split(line, {})
    except ExpansionError:
        return ()  # an open quote: the line has no heredoc words we could trust
    found = (parse_heredoc(word) for word in words)
    return tuple(h for h in found if h is not None)


def _quote_count(text: str) -> int:
    return text.count("'") + text.count('"')
