"""The compose project model: typed, resolved, checked.

A :class:`Project` is what the loader makes of the merged files: its services with
their paths made absolute, ``env_file`` read into ``environment``, image names
settled, and every cross-reference checked (a ``depends_on`` on a service that does
not exist, a cycle, an undeclared named volume or network). Each service keeps its
canonical configuration (:attr:`Service.config`), which ``moor compose config``
prints and the planner hashes.

Errors are :class:`ComposeFileError`: the file, then the dotted path of the key, then
what is wrong: ``compose.yaml: services.web.depends_on: dependency cycle: web -> db -> web``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moorage.compose.schema import parse_duration
from moorage.errors import InvalidArgument

__all__ = [
    "Build",
    "ComposeFileError",
    "Dependency",
    "Healthcheck",
    "Mount",
    "Network",
    "Port",
    "Project",
    "Service",
    "ServiceNetwork",
    "Volume",
    "config_hash",
]


class ComposeFileError(InvalidArgument):
    """An invalid compose file: ``file`` and the dotted ``path`` of the key."""

    def __init__(self, file: str, path: str, message: str) -> None:
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {message}")
        self.file = file
        self.path = path
        self.detail = message


@dataclass(frozen=True)
class Port:
    target: int
    published: str | None = None  # a port, a range, or None for any free port
    host_ip: str | None = None
    protocol: str = "tcp"


@dataclass(frozen=True)
class Mount:
    type: str  # volume, bind or tmpfs
    target: str
    source: str = ""  # the volume's full name, an absolute host path, or "" (anonymous)
    read_only: bool = False
    create_host_path: bool = False
    propagation: str | None = None
    nocopy: bool = False
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None


@dataclass(frozen=True)
class Build:
    context: str
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str | None = None
    no_cache: bool = False
    pull: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...] | None = None
    interval: float | None = None  # seconds
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    retries: int | None = None


@dataclass(frozen=True)
class Dependency:
    condition: str = "service_started"
    required: bool = True
    restart: bool = False


@dataclass(frozen=True)
class ServiceNetwork:
    name: str  # the network's full name on the engine
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class Service:
    name: str
    config: Mapping[str, Any]  # canonical and resolved: what `config` prints
    image: str
    build: Build | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()
    expose: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[str, ...] = ()
    networks: tuple[ServiceNetwork, ...] = ()
    network_mode: str | None = None
    depends_on: Mapping[str, Dependency] = field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    healthcheck_disabled: bool = False
    restart: str | None = None
    user: str | None = None
    working_dir: str | None = None
    read_only: bool = False
    init: bool | None = None
    hostname: str | None = None
    domainname: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1
    memory: int | None = None
    memory_reservation: int | None = None
    memswap: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids: int | None = None
    stop_grace_period: float | None = None
    stop_signal: str | None = None
    profiles: tuple[str, ...] = ()
    container_name: str | None = None
    tty: bool = False
    stdin_open: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    pull_policy: str = "missing"
    shm_size: int | None = None
    sysctls: Mapping[str, str] = field(default_factory=dict)
    ulimits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    logging: Mapping[str, Any] | None = None
    oom_score_adj: int | None = None
    platform: str | None = None

    @property
    def has_healthcheck(self) -> bool:
        """Whether containers of this service report health (theirs or their image's:
        the image's is only known to the engine, so this is the file's view)."""
        return self.healthcheck is not None and not self.healthcheck_disabled

    @property
    def builds(self) -> bool:
        return self.build is not None


@dataclass(frozen=True)
class Network:
    key: str  # the name in the file
    name: str  # the name on the engine
    external: bool = False
    driver: str | None = None
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    ipam: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Volume:
    key: str
    name: str
    external: bool = False
    driver: str | None = None
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    name: str
    working_dir: str
    config_files: tuple[str, ...]
    services: Mapping[str, Service]
    networks: Mapping[str, Network]
    volumes: Mapping[str, Volume]
    # Services left out by profiles that are not active: `up SERVICE` can enable one.
    disabled: Mapping[str, Service] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The resolved model, as ``moor compose config`` prints it."""
        out: dict[str, Any] = {"name": self.name, "services": {}}
        for name in sorted(self.services):
            out["services"][name] = copy.deepcopy(dict(self.services[name].config))
        if self.networks:
            out["networks"] = {k: _network_dict(n) for k, n in sorted(self.networks.items())}
        if self.volumes:
            out["volumes"] = {k: _volume_dict(v) for k, v in sorted(self.volumes.items())}
        return out

    def service(self, name: str) -> Service:
        found = self.services.get(name) or self.disabled.get(name)
        if found is None:
            raise InvalidArgument(f"no such service: {name}")
        return found

    def order(self, names: Iterable[str] | None = None, *, with_deps: bool = True) -> list[str]:
        """Service names, each after what it depends on; ``names`` and (unless
        ``with_deps`` is false) their dependencies, or every service."""
        wanted = set(self.services if names is None else names)
        for name in wanted:
            self.service(name)
        if with_deps:
            stack = list(wanted)
            while stack:
                for dep, spec in self.service(stack.pop()).depends_on.items():
                    if dep not in wanted and (dep in self.services or spec.required):
                        wanted.add(dep)
                        stack.append(dep)
        out: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in sorted(self.service(name).depends_on):
                if dep in wanted:
                    visit(dep)
            out.append(name)

        for name in sorted(wanted):
            visit(name)
        return out

    def dependents(self, name: str) -> list[str]:
        return sorted(n for n, s in self.services.items() if name in s.depends_on)


def _network_dict(network: Network) -> dict[str, Any]:
    out: dict[str, Any] = {"name": network.name}
    if network.external:
        out["external"] = True
    for key in ("driver", "internal", "attachable", "enable_ipv6"):
        value = getattr(network, key)
        if value:
            out[key] = value
    if network.driver_opts:
        out["driver_opts"] = dict(network.driver_opts)
    if network.labels:
        out["labels"] = dict(network.labels)
    if network.ipam:
        out["ipam"] = dict(network.ipam)
    return out


def _volume_dict(volume: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {"name": volume.name}
    if volume.external:
        out["external"] = True
    if volume.driver:
        out["driver"] = volume.driver
    if volume.driver_opts:
        out["driver_opts"] = dict(volume.driver_opts)
    if volume.labels:
        out["labels"] = dict(volume.labels)
    return out


# Keys left out of the hash: they change how many containers there are, where their
# image comes from or when they start, not what a container is (docker compose's list).
_UNHASHED = ("build", "depends_on", "profiles", "pull_policy", "scale")


def config_hash(service: Service) -> str:
    """The hash of a service's resolved configuration that its containers carry
    (``com.docker.compose.config-hash``): a change in it recreates them."""
    config = {k: v for k, v in service.config.items() if k not in _UNHASHED}
    deploy = dict(config.get("deploy") or {})
    deploy.pop("replicas", None)
    if deploy:
        config["deploy"] = deploy
    else:
        config.pop("deploy", None)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- from the merged tree to the model ----------------------------------------------


def _seconds(value: Any) -> float | None:
    return None if value is None else parse_duration(str(value))


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(value or ())


def build_service(
    name: str,
    config: dict[str, Any],
    image: str,
    networks: Mapping[str, Network],
    volumes: Mapping[str, Volume],
) -> Service:
    """A :class:`Service` from its resolved canonical configuration."""
    deploy = config.get("deploy") or {}
    resources = deploy.get("resources") or {}
    limits = resources.get("limits") or {}
    reservations = resources.get("reservations") or {}
    build = config.get("build")
    health = config.get("healthcheck")
    hc: Healthcheck | None = None
    disabled = False
    if health is not None:
        disabled = bool(health.get("disable")) or (health.get("test") or [""])[0] == "NONE"
        hc = Healthcheck(
            test=tuple(health["test"]) if health.get("test") else None,
            interval=_seconds(health.get("interval")),
            timeout=_seconds(health.get("timeout")),
            start_period=_seconds(health.get("start_period")),
            start_interval=_seconds(health.get("start_interval")),
            retries=health.get("retries"),
        )
    replicas = deploy.get("replicas", config.get("scale", 1))
    service_networks: list[ServiceNetwork] = []
    for key, spec in (config.get("networks") or {}).items():
        spec = spec or {}
        service_networks.append(
            ServiceNetwork(
                name=networks[key].name,
                aliases=tuple(spec.get("aliases") or ()),
                ipv4_address=spec.get("ipv4_address"),
                priority=int(spec.get("priority") or 0),
            )
        )
    service_networks.sort(key=lambda n: -n.priority)
    restart = config.get("restart")
    policy = deploy.get("restart_policy")
    if restart is None and policy:
        condition = policy.get("condition", "any")
        restart = {"none": "no", "any": "always"}.get(condition, "on-failure")
        if restart == "on-failure" and policy.get("max_attempts"):
            restart += f":{policy['max_attempts']}"
    return Service(
        name=name,
        config=config,
        image=image,
        build=None
        if build is None
        else Build(
            context=build["context"],
            dockerfile=build.get("dockerfile"),
            dockerfile_inline=build.get("dockerfile_inline"),
            args={k: v for k, v in (build.get("args") or {}).items() if v is not None},
            target=build.get("target"),
            labels=dict(build.get("labels") or {}),
            network=build.get("network"),
            no_cache=bool(build.get("no_cache")),
            pull=bool(build.get("pull")),
            tags=_tuple(build.get("tags")),
        ),
        command=None if config.get("command") is None else tuple(config["command"]),
        entrypoint=None if config.get("entrypoint") is None else tuple(config["entrypoint"]),
        environment={k: v for k, v in (config.get("environment") or {}).items() if v is not None},
        ports=tuple(
            Port(
                target=int(p["target"]),
                published=p.get("published"),
                host_ip=p.get("host_ip"),
                protocol=p.get("protocol", "tcp"),
            )
            for p in config.get("ports") or ()
        ),
        expose=_tuple(config.get("expose")),
        mounts=tuple(_mount(m, volumes) for m in config.get("volumes") or ()),
        tmpfs=_tuple(config.get("tmpfs")),
        networks=tuple(service_networks),
        network_mode=config.get("network_mode"),
        depends_on={
            dep: Dependency(
                condition=spec.get("condition", "service_started"),
                required=spec.get("required", True),
                restart=spec.get("restart", False),
            )
            for dep, spec in (config.get("depends_on") or {}).items()
        },
        healthcheck=hc,
        healthcheck_disabled=disabled,
        restart=restart,
        user=config.get("user"),
        working_dir=config.get("working_dir"),
        read_only=bool(config.get("read_only")),
        init=config.get("init"),
        hostname=config.get("hostname"),
        domainname=config.get("domainname"),
        labels=dict(config.get("labels") or {}) | dict(deploy.get("labels") or {}),
        replicas=int(replicas),
        memory=limits.get("memory", config.get("mem_limit")),
        memory_reservation=reservations.get("memory", config.get("mem_reservation")),
        memswap=config.get("memswap_limit"),
        cpus=limits.get("cpus", config.get("cpus")),
        cpu_shares=config.get("cpu_shares"),
        pids=limits.get("pids", config.get("pids_limit")),
        stop_grace_period=_seconds(config.get("stop_grace_period")),
        stop_signal=config.get("stop_signal"),
        profiles=_tuple(config.get("profiles")),
        container_name=config.get("container_name"),
        tty=bool(config.get("tty")),
        stdin_open=bool(config.get("stdin_open")),
        privileged=bool(config.get("privileged")),
        cap_add=_tuple(config.get("cap_add")),
        cap_drop=_tuple(config.get("cap_drop")),
        security_opt=_tuple(config.get("security_opt")),
        extra_hosts=dict(config.get("extra_hosts") or {}),
        dns=_tuple(config.get("dns")),
        dns_search=_tuple(config.get("dns_search")),
        dns_opt=_tuple(config.get("dns_opt")),
        pull_policy=config.get("pull_policy") or _default_pull_policy(config),
        shm_size=config.get("shm_size"),
        sysctls=dict(config.get("sysctls") or {}),
        ulimits=dict(config.get("ulimits") or {}),
        logging=config.get("logging"),
        oom_score_adj=config.get("oom_score_adj"),
        platform=config.get("platform"),
    )


def _default_pull_policy(config: Mapping[str, Any]) -> str:
    return "build" if config.get("build") and "image" not in config else "missing"


def _mount(spec: Mapping[str, Any], volumes: Mapping[str, Volume]) -> Mount:
    kind = spec["type"]
    source = spec.get("source", "")
    if kind == "volume" and source:
        source = volumes[source].name
    bind = spec.get("bind") or {}
    tmpfs = spec.get("tmpfs") or {}
    return Mount(
        type=kind,
        target=spec["target"],
        source=source,
        read_only=bool(spec.get("read_only")),
        create_host_path=bool(bind.get("create_host_path")),
        propagation=bind.get("propagation"),
        nocopy=bool((spec.get("volume") or {}).get("nocopy")),
        tmpfs_size=tmpfs.get("size"),
        tmpfs_mode=tmpfs.get("mode"),
    )


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a path (``[a, b, a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def resolve_path(path: str, base: str) -> str:
    """A path of the file (``./src``, ``~/data``, ``/abs``) made absolute."""
    path = os.path.expanduser(path)
    return os.path.normpath(os.path.join(base, path))
