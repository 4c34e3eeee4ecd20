"""A logger that imports ``logging`` only when something is logged.

The cgroup code is on every container start, where it rarely logs; importing
logging up front would cost ~4 ms there each time.
"""

from __future__ import annotations

from typing import Any


class LazyLogger:
    def __init__(self, name: str) -> None:
        self.name = name

    def _log(self, level: str, msg: str, *args: Any) -> None:
        import logging

        getattr(logging.getLogger(self.name), level)(msg, *args)

    def debug(self, msg: str, *args: Any) -> None:
        self._log("debug", msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self._log("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._log("warning", msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._log("error", msg, *args)
