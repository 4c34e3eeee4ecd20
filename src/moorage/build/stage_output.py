"""The messages of stages that build at the same time, passed on in stage order.

Independent stages of a multi-stage build run at once, but a reader (and the docker
CLI's classic display) expects one step after the other. So the stage first in build
order speaks directly; the others' messages are held until every stage before them
has finished, then passed on, and that stage speaks directly from then on. What comes
out reads exactly as a sequential build's output would, only sooner.

    out = OrderedOutput(emit, order=[0, 1, 2])
    out.emitter(1)({"stream": "Step 4/9 : ..."})   # held: stage 0 is still running
    out.finished(0)                                # stage 1's held messages go out
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["OrderedOutput"]

Emit = Callable[[dict[str, Any]], None]


class OrderedOutput:
    def __init__(self, emit: Emit, order: Sequence[int]) -> None:
        self._emit = emit
        self._order = list(order)
        self._position = 0  # index in _order of the stage that speaks directly
        self._held: dict[int, list[dict[str, Any]]] = {stage: [] for stage in self._order}
        self._finished: set[int] = set()
        # Held while passing messages on, so that two stages never interleave; a slow
        # client slows every stage down, as it would a sequential build.
        self._lock = threading.Lock()

    def emitter(self, stage: int) -> Emit:
        """What ``stage``'s steps call with each message."""

        def emit(message: dict[str, Any]) -> None:
            with self._lock:
                if self._speaking() == stage:
                    self._emit(message)
                else:
                    self._held[stage].append(message)

        return emit

    def finished(self, stage: int) -> None:
        """``stage`` is done: the stages after it in order may speak."""
        with self._lock:
            self._finished.add(stage)
            while self._speaking() in self._finished:
                self._position += 1
                self._release(self._speaking())

    def flush(self) -> None:
        """Pass on everything held, in stage order (the build failed: show all)."""
        with self._lock:
            while self._position < len(self._order):
                self._release(self._order[self._position])
                self._position += 1

    def _speaking(self) -> int | None:
        if self._position < len(self._order):
            return self._order[self._position]
        return None

    def _release(self, stage: int | None) -> None:
        if stage is None:
            return
        held, self._held[stage] = self._held[stage], []
        for message in held:
            self._emit(message)
