"""A compose command run as a user would (`moor compose` or docker-compose), failing the
test with its output when it fails."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_compose(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    shown: str,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``cwd``; ``shown`` names the command in a failure's message."""
    result = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shown} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result
