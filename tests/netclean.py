"""Removing what a test daemon's networks left on the host: its bridges (the default
one and those of user-defined networks, as its records list them) and its nftables
table. Veths need nothing: they go with their containers' network namespaces."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

# The bridges this process handed out: the only ones its session cleanup may remove
# (another process's test or benchmark daemon may be running with its own).
HANDED_OUT: set[str] = set()


def new_test_bridge() -> str:
    """A default bridge of a test daemon's own (so it never shares the host's moor0)."""
    name = f"mt{uuid.uuid4().hex[:8]}"
    HANDED_OUT.add(name)
    return name


def remove_daemon_networks(root: Path, bridge: str) -> None:
    bridges = {bridge}
    for path in (root / "networks").glob("*.json"):
        try:
            name = json.loads(path.read_text()).get("Bridge")
        except (OSError, ValueError):
            continue
        if name:
            bridges.add(name)
    for name in sorted(bridges):
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    subprocess.run(
        ["nft", "delete", "table", "ip", f"moorage_{bridge}"], capture_output=True, check=False
    )
