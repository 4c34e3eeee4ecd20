"""Running a transfer's parallel steps: all of them, or none once one fails.

``asyncio.TaskGroup`` cancels the rest when one task fails, which is what a pull wants
(no point fetching layers of an image that cannot be stored), but reports the failure
wrapped in an ``ExceptionGroup``. Callers want the error itself, a ``MoorageError``
with a message a user can act on, so :func:`run_all` unwraps the first one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ["run_all"]


async def run_all(steps: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``steps`` concurrently; on the first failure cancel the others and raise it."""
    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(step)
    except BaseExceptionGroup as failures:
        raise _first(failures) from None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
