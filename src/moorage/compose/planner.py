"""Convergence: what ``up`` must do to make the engine match the project.

A reconcile in the controller-runtime sense: :func:`plan` reads the containers the
engine has for the project (by their labels, :class:`Observed`) and decides, service
by service in dependency order, which to create, recreate, start, keep or remove. It
calls nothing; the runner carries the plan out.

A container is recreated when its ``com.docker.compose.config-hash`` label differs
from the hash of its service's resolved configuration
(:func:`~moorage.compose.model.config_hash`), when its image is not the image the
service's name now points at, or with ``--force-recreate``; a stopped one whose
configuration is current is started; replicas above the wanted number are removed,
highest number first; missing numbers are created. Containers of services the
project no longer has are orphans.

Example: a project whose ``web`` changed its environment and whose ``db`` did not
plans ``keep db-1`` and ``recreate web-1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from moorage.compose.model import Project, Service, config_hash

__all__ = [
    "LABEL_CONFIG_HASH",
    "LABEL_IMAGE",
    "LABEL_NUMBER",
    "LABEL_ONEOFF",
    "LABEL_PROJECT",
    "LABEL_SERVICE",
    "Action",
    "Observed",
    "Plan",
    "ServicePlan",
    "container_name",
    "plan",
]

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_CONFIG_HASH = "com.docker.compose.config-hash"
LABEL_IMAGE = "com.docker.compose.image"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_VERSION = "com.docker.compose.version"
LABEL_DEPENDS_ON = "com.docker.compose.depends_on"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"

Kind = Literal["create", "recreate", "start", "keep", "remove"]


@dataclass(frozen=True)
class Observed:
    """A container of the project as the engine lists it."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    image_id: str
    state: str  # created, running, exited, ...
    oneoff: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> Observed:
        """From an entry of ``GET /containers/json``."""
        labels = summary.get("Labels") or {}
        names = summary.get("Names") or [""]
        try:
            number = int(labels.get(LABEL_NUMBER, "0"))
        except ValueError:
            number = 0
        return cls(
            id=str(summary.get("Id", "")),
            name=str(names[0]).lstrip("/"),
            service=labels.get(LABEL_SERVICE, ""),
            number=number,
            config_hash=labels.get(LABEL_CONFIG_HASH, ""),
            image_id=labels.get(LABEL_IMAGE) or str(summary.get("ImageID") or ""),
            state=str(summary.get("State") or ""),
            oneoff=labels.get(LABEL_ONEOFF, "False") == "True",
            labels=dict(labels),
        )


@dataclass(frozen=True)
class Action:
    kind: Kind
    service: str
    number: int
    container: Observed | None = None  # the existing one (not for create)
    reason: str = ""

    def __str__(self) -> str:
        name = self.container.name if self.container else f"{self.service}-{self.number}"
        return f"{self.kind} {name}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ServicePlan:
    service: str
    actions: tuple[Action, ...]

    @property
    def changes(self) -> bool:
        return any(a.kind != "keep" for a in self.actions)


@dataclass(frozen=True)
class Plan:
    services: tuple[ServicePlan, ...]  # in dependency order
    orphans: tuple[Observed, ...] = ()

    def of(self, service: str) -> ServicePlan | None:
        return next((s for s in self.services if s.service == service), None)

    def actions(self) -> list[Action]:
        return [a for s in self.services for a in s.actions]


def container_name(project: Project, service: Service, number: int) -> str:
    """``<project>-<service>-<n>`` (or the service's ``container_name``)."""
    if service.container_name:
        return service.container_name
    return f"{project.name}-{service.name}-{number}"


def plan(
    project: Project,
    observed: Iterable[Observed],
    *,
    services: Sequence[str] | None = None,
    with_deps: bool = True,
    scale: Mapping[str, int] | None = None,
    force_recreate: bool = False,
    no_recreate: bool = False,
    image_ids: Mapping[str, str] | None = None,
) -> Plan:
    """What to do, service by service (see the module doc).

    ``services``: the services asked for (None: all), with their dependencies unless
    ``with_deps`` is false; ``scale``: replicas by service, over the file's;
    ``image_ids``: the id of each service's image now (unknown: not compared).
    """
    containers = [c for c in observed if not c.oneoff]
    names = project.order(services, with_deps=with_deps)
    asked = set(services) if services is not None else set(names)
    out: list[ServicePlan] = []
    for name in names:
        service = project.services[name]
        mine = sorted((c for c in containers if c.service == name), key=lambda c: c.number)
        wanted = (scale or {}).get(name, service.replicas)
        expected = config_hash(service)
        image_id = (image_ids or {}).get(name, "")
        actions: list[Action] = []
        kept = mine[:wanted]
        for c in reversed(mine[wanted:]):
            actions.append(Action("remove", name, c.number, c, "scaled down"))
        for c in kept:
            reason = _recreate_reason(c, expected, image_id, force_recreate and name in asked)
            if reason and not no_recreate:
                actions.append(Action("recreate", name, c.number, c, reason))
            elif not c.running:
                actions.append(Action("start", name, c.number, c))
            else:
                actions.append(Action("keep", name, c.number, c))
        used = {c.number for c in kept}
        number = 1
        for _ in range(wanted - len(kept)):
            while number in used:
                number += 1
            used.add(number)
            actions.append(Action("create", name, number))
        out.append(ServicePlan(name, tuple(actions)))
    every = set(project.services) | set(project.disabled)
    orphans = tuple(c for c in containers if c.service not in every)
    return Plan(tuple(out), orphans)


def _recreate_reason(c: Observed, expected: str, image_id: str, force: bool) -> str:
    if force:
        return "forced"
    if c.config_hash != expected:
        return "configuration changed"
    if image_id and c.image_id and c.image_id != image_id:
        return "image changed"
    return ""
