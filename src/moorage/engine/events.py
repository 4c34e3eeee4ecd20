"""The engine's event stream (``docker events``): a bounded history and live listeners.

Events have Docker's shape (``Type``, ``Action``, ``Actor``, ``time``, ``timeNano``,
and the legacy ``status``/``id`` for containers and images, ``from`` for containers).
Listeners are plain callables; the API layer registers one that hands events to its
event loop, so a slow HTTP client never blocks the engine.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Listener = Callable[[Event], None]

HISTORY = 1024  # events kept for ``--since`` (dockerd keeps 256)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every later event; returns the unsubscribe function."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def history(self, since: float | None = None, until: float | None = None) -> list[Event]:
        with self._lock:
            events = list(self._history)
        # timeNano, not time: ``--since 1764072000.5`` must not drop the events of that second.
        since_ns = None if since is None else int(since * 1e9)
        until_ns = None if until is None else int(until * 1e9)
        return [
            e
            for e in events
            if (since_ns is None or e["timeNano"] >= since_ns)
            and (until_ns is None or e["timeNano"] <= until_ns)
        ]

    def publish(
        self,
        kind: str,
        action: str,
        actor_id: str,
        attributes: Mapping[str, str] | None = None,
    ) -> Event:
        now = time.time_ns()
        event: Event = {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": now // 10**9,
            "timeNano": now,
        }
        if kind in ("container", "image"):  # dockerd's legacy fields, for these two
            event["status"] = action
            event["id"] = actor_id
            if kind == "container" and attributes and "image" in attributes:
                event["from"] = attributes["image"]
        with self._lock:
            self._history.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the engine
                log.exception("event listener failed")
        return event
