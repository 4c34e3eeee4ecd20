"""Retries with exponential backoff: which failures are worth another try, and when.

A registry that resets a connection, answers 5xx or says 429 (too many requests)
usually answers the same request a moment later; a 4xx other than 429 will not
change by waiting. :class:`Backoff` is the policy as data::

    >>> list(Backoff(attempts=5, initial=0.5, factor=2, maximum=3, jitter=0).delays())
    [0.5, 1.0, 2.0, 3.0]

``attempts`` counts tries, so there is one delay fewer. Jitter (a random fraction of
each delay, added) keeps many clients that failed together from retrying together.
A registry's ``Retry-After`` (seconds) replaces the computed delay, up to ``maximum``.
The clock and the sleep are parameters so that tests run the logic with fakes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import NamedTuple

__all__ = ["DEFAULT_BACKOFF", "RETRY_STATUSES", "Backoff", "Sleep", "retry_after"]

# Statuses worth retrying: too many requests, and the server-side failures that are
# usually transient (a 501 Not Implemented is not).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]


class Backoff(NamedTuple):
    attempts: int = 5
    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 8.0
    jitter: float = 0.1  # up to this fraction of each delay is added at random

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between tries: ``attempts - 1`` of them."""
        delay = self.initial
        for _ in range(max(0, self.attempts - 1)):
            wait = min(delay, self.maximum)
            if self.jitter:
                wait += wait * self.jitter * (rng or random).random()
            yield wait
            delay *= self.factor

    def wait_for(self, attempt: int, retry_after_header: str | None = None) -> float:
        """How long to wait after failed try number ``attempt`` (0-based)."""
        hinted = retry_after(retry_after_header)
        if hinted is not None:
            return min(hinted, self.maximum)
        wait = min(self.initial * self.factor**attempt, self.maximum)
        if self.jitter:
            wait += wait * self.jitter * random.random()
        return wait


DEFAULT_BACKOFF = Backoff()


def retry_after(header: str | None) -> float | None:
    """A ``Retry-After`` in seconds; the HTTP-date form is not worth a date parser here."""
    if header is None:
        return None
    text = header.strip()
    if not text.isdigit():
        return None
    return float(text)


async def default_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
