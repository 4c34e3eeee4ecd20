"""``list``: every container under the runtime root with its status."""

from __future__ import annotations

import os
from typing import NamedTuple

from moorage.errors import MoorageError
from moorage.runtime.container import ContainerDir
from moorage.runtime.state import current_status


class Summary(NamedTuple):
    id: str
    pid: int
    status: str
    bundle: str
    rootfs: str
    created: str
    owner: str
    annotations: dict[str, str]

    def to_dict(self) -> dict[str, object]:
        return {
            "ociVersion": "1.2.0",
            "id": self.id,
            "pid": self.pid,
            "status": self.status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        }


def list_containers(root: str) -> list[Summary]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out: list[Summary] = []
    for name in names:
        try:
            cdir = ContainerDir(root, name)
            record = cdir.read()
        except MoorageError:
            continue
        status = current_status(cdir, record)
        out.append(
            Summary(
                id=record.id,
                pid=record.pid if status != "stopped" else 0,
                status=status,
                bundle=record.bundle,
                rootfs=record.rootfs,
                created=record.created,
                owner=record.owner,
                annotations=record.annotations,
            )
        )
    return out
