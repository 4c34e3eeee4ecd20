"""Restart policies with Docker's backoff.

Docker waits 100 ms before the first restart and doubles the wait after each
one, up to a minute; a container that ran for at least 10 seconds resets the
wait. ``unless-stopped`` and ``always`` differ only in what a manual stop means
across a daemon restart: both stay stopped after ``docker stop``, but ``always``
comes back when the daemon starts again.
"""

from __future__ import annotations

from typing import Any

from moorage.engine.container_record import parse_rfc3339

INITIAL_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


class Backoff:
    def __init__(self) -> None:
        self.delay = 0.0

    def next_delay(self, started_at: str, finished_at: str) -> float:
        ran = parse_rfc3339(finished_at) - parse_rfc3339(started_at)
        if self.delay == 0.0 or ran >= RESET_AFTER:
            self.delay = INITIAL_DELAY
        else:
            self.delay = min(self.delay * 2, MAX_DELAY)
        return self.delay


def should_restart(
    policy: dict[str, Any], exit_code: int, restart_count: int, manually_stopped: bool
) -> bool:
    name = policy.get("Name") or "no"
    if manually_stopped or name == "no":
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False
