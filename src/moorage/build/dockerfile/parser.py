"""Reading a Dockerfile into nodes: one per instruction, with its line range.

This module owns the physical layout of the file, with BuildKit's rules:

- parser directives at the very top (``directives``); a UTF-8 byte-order mark is dropped;
- a line ending in the escape character (``\\`` or the ``# escape=`` backtick), possibly
  followed by blanks, continues on the next line; an escaped escape does not;
- while an instruction continues, comment lines are dropped and blank lines are skipped
  (they do not end it; BuildKit warns about them: ``empty_continuations``);
- leading blanks of the first line are dropped, those of continuation lines kept;
- comment lines (``#`` after optional blanks) between instructions are ignored, but the
  ones just above an instruction are kept with it (``check=`` overrides, doc comments);
- after a RUN, COPY or ADD line (or ONBUILD of one) in shell form with heredoc words,
  the bodies follow, each up to a line equal to its name (after removing leading tabs
  for ``<<-``); a missing terminator is an error.

Example: the text ``FROM a\\nRUN echo \\\\\\n  hi\\n`` gives two nodes, ``FROM`` on line 1 and
``RUN`` with the argument ``"echo   hi"`` on lines 2-3. Splitting a line into its
keyword, flags and arguments is ``arguments``; typing and checking them is ``convert``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from moorage.build.dockerfile.arguments import ArgumentError, Split, split_line
from moorage.build.dockerfile.directives import DirectiveReader, Directives
from moorage.build.dockerfile.heredoc import Heredoc, heredocs_in_line
from moorage.build.dockerfile.source import DockerfileError, Lines
from moorage.build.dockerfile.words import ExpansionError

__all__ = ["Node", "ParsedFile", "parse_nodes"]

_HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})


@dataclass(frozen=True)
class Node:
    """One instruction as written, split for its keyword but not yet checked."""

    keyword: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json: bool
    original: str  # the logical line
    lines: Lines
    heredocs: tuple[Heredoc, ...] = ()
    comments: tuple[str, ...] = ()
    child: Node | None = None  # the instruction ONBUILD adds


@dataclass(frozen=True)
class ParsedFile:
    file: str
    nodes: tuple[Node, ...]
    directives: Directives
    empty_continuations: tuple[Lines, ...] = ()  # instructions with blank continuation lines

    @property
    def escape(self) -> str:
        return self.directives.escape


def parse_nodes(text: str | bytes, file: str = "Dockerfile") -> ParsedFile:
    """Parse the text of a Dockerfile named ``file`` (used in error messages)."""
    return _Reader(_decode(text, file), file).read()


def _decode(text: str | bytes, file: str) -> str:
    if isinstance(text, str):
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DockerfileError(file, None, f"not valid UTF-8 at byte {exc.start}") from None


def _continuation(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


class _Reader:
    """Walks the physical lines once; ``lineno`` is the number of lines consumed."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()  # the text ended with a newline
        self.lineno = 0
        self.directives = DirectiveReader(file)
        self.escape = "\\"
        self.continuation = _continuation(self.escape)

    def next_line(self) -> str | None:
        if self.lineno >= len(self.lines):
            return None
        line = self.lines[self.lineno]
        self.lineno += 1
        return line.removeprefix("\ufeff") if self.lineno == 1 else line

    def read(self) -> ParsedFile:
        nodes: list[Node] = []
        comments: list[str] = []
        empties: list[Lines] = []
        while (raw := self.next_line()) is not None:
            if _is_comment(raw):
                text = raw.lstrip()[1:].strip()
                comments = [*comments, text] if text else []
            line = self.first_line(raw)
            if line is None:
                comments.pop()  # a directive is not a comment of the next instruction
                continue
            start = self.lineno
            line, ends = self.trim_continuation(line)
            if ends and not line:
                continue
            logical, had_empty = self.continue_lines(line, ends)
            if not logical.strip():
                continue
            node = self.node(logical, start, comments)
            if had_empty:
                empties.append(node.lines)
            nodes.append(node)
            comments = []
        if not nodes:
            raise DockerfileError(self.file, None, "file with no instructions")
        return ParsedFile(self.file, tuple(nodes), self.directives.directives(), tuple(empties))

    def first_line(self, raw: str) -> str | None:
        """The first line of an instruction, "" for a comment, None for a directive."""
        line = raw.rstrip("\r\n").lstrip()
        if self.directives.feed(line, self.lineno):
            self.escape = self.directives.directives().escape
            self.continuation = _continuation(self.escape)
            return None
        return "" if _is_comment(line) else line

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """The line without its continuation mark, and whether the instruction ends."""
        found = self.continuation.search(line)
        if found is None:
            return line, True
        return line[: found.start()] + (found[1] or ""), False

    def continue_lines(self, line: str, ends: bool) -> tuple[str, bool]:
        parts = [line]
        had_empty = False
        while not ends and (raw := self.next_line()) is not None:
            if _is_comment(raw):
                continue
            text = raw.rstrip("\r\n")
            if not text.strip():
                had_empty = True
                continue
            text, ends = self.trim_continuation(text)
            parts.append(text)
        return "".join(parts), had_empty

    def node(self, logical: str, start: int, comments: list[str]) -> Node:
        try:
            split = split_line(logical, self.escape)
        except ArgumentError as exc:
            raise DockerfileError(self.file, start, str(exc)) from None
        heredocs: tuple[Heredoc, ...] = ()
        if _may_have_heredocs(split) and "<<" in logical:
            heredocs = self.heredoc_bodies(logical, start)
        lines = Lines(start, self.lineno)
        return _to_node(split, logical, lines, heredocs, tuple(comments))

    def heredoc_bodies(self, logical: str, start: int) -> tuple[Heredoc, ...]:
        try:
            found = heredocs_in_line(logical)
        except ExpansionError as exc:
            raise DockerfileError(self.file, start, str(exc)) from None
        return tuple(self.body(heredoc, start) for heredoc in found)

    def body(self, heredoc: Heredoc, start: int) -> Heredoc:
        content: list[str] = []
        while (raw := self.next_line()) is not None:
            candidate = raw.rstrip("\r\n")
            if heredoc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == heredoc.name:
                return replace(heredoc, content="".join(content))
            content.append(raw + "\n")
        raise DockerfileError(self.file, start, f"unterminated heredoc {heredoc.name}")


def _may_have_heredocs(split: Split) -> bool:
    if split.keyword.lower() == "onbuild" and split.child is not None:
        split = split.child
    return split.keyword.lower() in _HEREDOC_KEYWORDS and not split.json


def _to_node(
    split: Split,
    logical: str,
    lines: Lines,
    heredocs: tuple[Heredoc, ...],
    comments: tuple[str, ...],
) -> Node:
    child = None
    if split.child is not None:
        inner = logical.strip()[len(split.keyword) :].strip()
        child = _to_node(split.child, inner, lines, heredocs, ())
    return Node(
        keyword=split.keyword,
        flags=split.flags,
        args=split.args,
        json=split.json,
        original=logical,
        lines=lines,
        heredocs=heredocs,
        comments=comments,
        child=child,
    )
