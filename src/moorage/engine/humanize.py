"""Docker's human durations, as ``ps`` shows them ("Up 3 minutes", "Exited (0) 2 hours ago").

The daemon writes these into ``Status`` itself, as dockerd does, so every client
(the docker CLI, docker-py, ``moor``) prints the same words.
"""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """Go's ``units.HumanDuration``: the words dockerd uses."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(s / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"
