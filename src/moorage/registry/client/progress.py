"""Progress of a transfer, as data: what happens to each blob, reported as it happens.

A pull or push calls its ``progress`` callback with a :class:`Progress` for every step
of every layer; the caller decides what to show (the daemon turns them into Docker's
JSON progress messages). The callback runs on the event loop and must not block.

Pull, per layer: ``waiting`` (queued behind the parallel limit), then either
``exists`` (already in the store) or ``downloading`` (repeated, with ``current`` and
``total`` bytes; ``current`` starts above 0 when a download resumes), ``verifying``
and ``downloaded``. Push, per layer: ``waiting``, then ``exists`` (the registry has
it), ``mounted`` (from ``source``, another repository of the same registry) or
``pushing`` (repeated) and ``pushed``. The whole: ``resolved`` once the manifest is
known (``digest`` is what the reference points at), before any layer's step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Progress", "ProgressFn", "ignore"]


class Progress(NamedTuple):
    action: str
    digest: str  # the layer's (or, for "resolved", the manifest's or index's)
    current: int = 0
    total: int = 0
    source: str | None = None  # "mounted": the repository it came from


ProgressFn = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    """A progress callback for callers that show nothing."""


class Throttle:
    """Whether a byte count moved enough since the last report to report it again."""

    def __init__(self, total: int, step: int = 512 * 1024) -> None:
        # About a hundred reports for a big blob, one per half-megabyte for a small one.
        self._step = max(step, total // 100)
        self._last = -self._step

    def due(self, current: int) -> bool:
        if current - self._last >= self._step:
            self._last = current
            return True
        return False
