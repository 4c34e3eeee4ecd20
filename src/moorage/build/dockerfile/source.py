"""Where an instruction came from, and the error that points there.

Every instruction carries a :class:`Source` (the file name as given, its line range, the
keyword as written and the logical line), so an error found while parsing or later while
building names the line: ``Dockerfile:7: unknown instruction "RUNN"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from moorage.errors import InvalidArgument

__all__ = ["DockerfileError", "Lines", "Source", "quoted"]


@dataclass(frozen=True)
class Lines:
    """A 1-based, inclusive line range: an instruction with its continuations and heredocs."""

    start: int
    end: int


@dataclass(frozen=True)
class Source:
    """The text an instruction was parsed from."""

    file: str
    lines: Lines
    keyword: str  # as written: "RUN", "run" or "Run"
    original: str  # the logical line, continuations joined
    comments: tuple[str, ...] = ()  # the comment lines just above, without "#"

    def error(self, message: str) -> DockerfileError:
        """An error located at this instruction's first line."""
        return DockerfileError(self.file, self.lines.start, message)


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed or built, located at a line when one is known."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {message}")


def quoted(text: str) -> str:
    """``text`` in double quotes, escaped as Go's ``%q`` would (for messages)."""
    return json.dumps(text, ensure_ascii=False)
