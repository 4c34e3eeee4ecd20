"""Where a blob came from: the content label that lets a push mount instead of upload.

When a pull stores a blob it labels it, as containerd does, with
``containerd.io/distribution.source.<registry host>=<repository>[,<repository>...]``:
the repositories of that registry known to hold it. A later push of the blob to another
repository of the same registry can then ask the registry to mount it from one of them
(``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repository>``) rather than send
its bytes. A push adds its target repository to the label as well.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["SOURCE_LABEL_PREFIX", "source_label", "sources_of", "with_source"]

SOURCE_LABEL_PREFIX = "containerd.io/distribution.source."
# Label values are bounded in practice: keep the most recent repositories only.
_MAX_SOURCES = 32


def source_label(host: str) -> str:
    return SOURCE_LABEL_PREFIX + host


def sources_of(labels: Mapping[str, str], host: str) -> list[str]:
    """The repositories of ``host`` the blob is known to be in, most recent last."""
    value = labels.get(source_label(host), "")
    return [repo for repo in value.split(",") if repo]


def with_source(labels: Mapping[str, str], host: str, repository: str) -> dict[str, str]:
    """The one label to set so that it also names ``repository`` (a dict, maybe empty).

    Empty when the label names it already: nothing to write.
    """
    repos = sources_of(labels, host)
    if repository in repos:
        return {}
    repos = (repos + [repository])[-_MAX_SOURCES:]
    return {source_label(host): ",".join(repos)}
