"""Docker's JSON progress streams (pull, push) shown as people expect them.

On a terminal, one line per layer, redrawn in place as its status and bar change
(ANSI cursor movement, as the docker CLI does); elsewhere (a pipe, a log), plain lines,
one per change of a layer's status, without the byte counts in between::

    a46fbb00284b: Pulling fs layer
    a46fbb00284b: Downloading [=====>        ]  1.2MB/2.2MB      (terminal only)
    a46fbb00284b: Pull complete
    Digest: sha256:...

An ``error`` message ends the stream with :class:`FailedPrecondition` carrying it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from typing import Any, TextIO

from moorage.errors import FailedPrecondition

__all__ = ["ProgressPrinter", "show_stream"]


class ProgressPrinter:
    def __init__(self, out: TextIO, *, tty: bool, width: int | None = None) -> None:
        self.out = out
        self.tty = tty
        self.width = width or shutil.get_terminal_size((100, 24)).columns
        self._lines: list[str] = []  # ids, in the order their lines were printed (tty)
        self._last: dict[str, str] = {}  # id -> last status printed (plain)

    def show(self, message: dict[str, Any]) -> None:
        if message.get("error") or message.get("errorDetail"):
            detail = message.get("errorDetail") or {}
            raise FailedPrecondition(str(message.get("error") or detail.get("message", "")))
        status = str(message.get("status") or "")
        if not status:
            return  # aux messages (push's digest record) carry nothing to show
        ident = str(message.get("id") or "")
        if not ident:
            self._lines.clear()  # later layer lines start below this one
            self.out.write(status + "\n")
        elif self.tty:
            self._redraw(ident, self._text(ident, status, message))
        elif self._last.get(ident) != status:
            self._last[ident] = status
            self.out.write(f"{ident}: {status}\n")
        self.out.flush()

    def _text(self, ident: str, status: str, message: dict[str, Any]) -> str:
        bar = message.get("progress") or ""
        text = f"{ident}: {status} {bar}".rstrip()
        # A wrapped line would throw the cursor arithmetic off by one row.
        return text[: max(1, self.width - 1)]

    def _redraw(self, ident: str, text: str) -> None:
        if ident not in self._lines:
            self._lines.append(ident)
            self.out.write(text + "\n")
            return
        up = len(self._lines) - self._lines.index(ident)
        # Up to the layer's row, clear it, write, and back down to below the block.
        self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")


def show_stream(messages: Iterable[dict[str, Any]], out: TextIO, *, quiet: bool = False) -> None:
    """Print a progress stream (nothing with ``quiet``, but errors still raise)."""
    printer = ProgressPrinter(out, tty=_isatty(out))
    for message in messages:
        if quiet:
            if message.get("error") or message.get("errorDetail"):
                printer.show(message)
            continue
        printer.show(message)


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
