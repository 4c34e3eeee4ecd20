"""What the executor needs from the engine, as interfaces (the engine implements them).

The builder sits below the engine (DESIGN.md): it never imports the image service or
the container service. The engine hands it a :class:`Backend` (images, root filesystems
to work in, processes to run) and a :class:`Cache`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from moorage.build.state import ImageState, Layer

__all__ = ["Backend", "Cache", "RunProcess", "Workspace"]


@dataclass(frozen=True)
class RunProcess:
    """A RUN step's process, as the backend runs it in a workspace."""

    argv: tuple[str, ...]
    env: tuple[str, ...]  # "KEY=value"
    user: str  # as the image config has it ("" is root)
    cwd: str
    network: str = "default"  # default (the bridge), none or host
    # Files that appear in the process's view only (secrets, heredoc scripts) and
    # never in the layer: container path -> (content, mode).
    files: Mapping[str, tuple[bytes, int]] = field(default_factory=dict)
    # Host directories or files bound in (cache mounts, read-only binds from the
    # context or another stage): container path -> (host path, read-only).
    binds: Mapping[str, tuple[str, bool]] = field(default_factory=dict)
    tmpfs: Mapping[str, int] = field(default_factory=dict)  # container path -> size (0: none)


class Workspace(Protocol):
    """A writable root filesystem made from an image state, mounted at ``path``."""

    path: str


class Backend(Protocol):
    def base_image(self, ref: str, *, pull: bool) -> ImageState:
        """A local image's state (pulling it first when ``pull``)."""

    def workspace(self, state: ImageState) -> AbstractContextManager[Workspace]:
        """A writable root filesystem of ``state``, removed when the block ends."""

    def layer_of(self, workspace: Workspace, source_date_epoch: int) -> Layer | None:
        """What changed in ``workspace``, stored as a layer (None: nothing changed);
        file times later than ``source_date_epoch`` are clamped to it."""

    def run(
        self, workspace: Workspace, process: RunProcess, output: Callable[[bytes], None]
    ) -> int:
        """Run ``process`` in ``workspace``; its output goes to ``output``; the exit code."""

    def cache_dir(self, cache_id: str, mode: int, uid: int, gid: int) -> str:
        """The host directory of ``RUN --mount=type=cache,id=...`` (made on first use,
        kept across builds until the build cache is pruned)."""

    def lookup_user(self, workspace: Workspace, user: str) -> tuple[int, int]:
        """``user`` (``name``, ``uid``, ``name:group``...) as uid and gid, from the
        workspace's /etc/passwd and /etc/group."""

    @property
    def architecture(self) -> str: ...


class Cache(Protocol):
    def get(self, key: str) -> ImageState | None: ...

    def put(self, key: str, state: ImageState) -> None: ...
