"""``moor build --progress tty``: a live display of a build's steps.

The daemon speaks the classic builder's text (``Step 3/9 : COPY . .``, `` ---> Using
cache``, `` ---> 0123abcd``, the steps' own output in between). On a terminal that
becomes one line per step with its state and time, the step running now with a
spinner and the last lines of its output, redrawn as it goes (rich's Live):

    [+] Building 2.4s (5/9)
     => [3/9] COPY app/ /app/                                   0.8s
     => CACHED [4/9] RUN make                                   0.0s
     => [5/9] RUN make test                                     1.1s
        ok 12 tests

A failing build prints the whole output of its failing step below the display, as
BuildKit does. Lines that are not part of a step (``Successfully built ...``, lint
warnings) are printed under the display once it stops.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["TtyDisplay"]

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_RESULT = re.compile(r"^ ---> ([0-9a-f]{12})$")
_TAIL = 6  # output lines shown under the running step


@dataclass
class _Step:
    number: int
    total: int
    text: str
    started: float
    ended: float | None = None
    cached: bool = False
    output: list[str] = field(default_factory=list)

    def elapsed(self, now: float) -> float:
        return (self.ended or now) - self.started


class TtyDisplay:
    """Feed it the build's text as it comes; :meth:`close` when the build is over."""

    def __init__(self, out: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=out, highlight=False)
        self._start = time.monotonic()
        self._steps: list[_Step] = []
        self._after: list[str] = []  # lines after the last step (results, warnings)
        self._partial = ""
        self._live = Live(
            get_renderable=self._render,
            console=self._console,
            refresh_per_second=10,
            transient=False,
        )
        self._live.start()

    # --- input ------------------------------------------------------------------

    def feed(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        now = time.monotonic()
        step = _STEP.match(line)
        current = self._steps[-1] if self._steps else None
        if step:
            self._finish(current, now)
            number, total, text = int(step[1]), int(step[2]), step[3]
            self._steps.append(_Step(number, total, text, now))
            return
        if current is not None and current.ended is None:
            if line == " ---> Using cache":
                current.cached = True
                return
            if _RESULT.match(line):
                self._finish(current, now)
                return
            current.output.append(line)
            return
        if line.startswith(" ---> "):
            return  # an intermediate id of a finished step
        self._after.append(line)

    @staticmethod
    def _finish(step: _Step | None, now: float) -> None:
        if step is not None and step.ended is None:
            step.ended = now

    # --- output -----------------------------------------------------------------

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        done = sum(1 for s in self._steps if s.ended is not None)
        total = self._steps[-1].total if self._steps else 0
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
        table.add_column(justify="right", width=7)
        verb = "Built" if self._steps and done == len(self._steps) else "Building"
        table.add_row(
            Text(f"[+] {verb} {now - self._start:.1f}s ({done}/{total})", style="bold"),
            "",
        )
        for step in self._steps:
            mark = "CACHED " if step.cached else ""
            label = Text(f" => {mark}[{step.number}/{step.total}] {step.text}")
            if step.ended is None:
                label.stylize("bold")
                timing: Any = Spinner("dots", text=f"{step.elapsed(now):.1f}s")
            else:
                timing = Text(f"{step.elapsed(now):.1f}s", style="dim")
            table.add_row(label, timing)
            if step.ended is None:
                for line in step.output[-_TAIL:]:
                    table.add_row(Text(f"    {line}", style="dim"), "")
        return table

    def close(self, failed: bool = False) -> None:
        """Stop the display; on a failure, print the failing step's whole output."""
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        running = self._steps[-1] if self._steps and self._steps[-1].ended is None else None
        self._finish(running, time.monotonic())
        self._live.stop()
        if failed and running is not None and running.output:
            self._console.print(f"------\n > [{running.number}/{running.total}] {running.text}:")
            for line in running.output:
                self._console.print(f"    {line}", markup=False)
            self._console.print("------")
        for line in self._after:
            self._console.print(line, markup=False)
