"""A service's options as the Docker Engine API's ``POST /containers/create`` body.

:func:`create_body` is data in, data out: the runner sends what it returns. The
mapping follows docker compose: ``ports`` to ``PortBindings`` and ``ExposedPorts``;
short-syntax binds (which create a missing host path) to ``Binds``, every other
volume, bind and tmpfs to ``Mounts``; ``deploy.resources.limits`` to ``Memory``,
``NanoCpus`` and ``PidsLimit``; ``stop_grace_period`` to ``StopTimeout``; each
network as an endpoint whose aliases include the service's name; the compose labels
that let the planner find the container again.

Example: a service ``web`` with ``ports: ["8080:80"]`` gives
``HostConfig.PortBindings == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from moorage import __version__
from moorage.compose import planner
from moorage.compose.model import Healthcheck, Mount, Project, Service, config_hash

__all__ = ["compose_labels", "create_body", "network_mode"]

_NS = 1_000_000_000


def compose_labels(
    project: Project, service: Service, number: int, *, oneoff: bool = False, image_id: str = ""
) -> dict[str, str]:
    labels = {
        planner.LABEL_PROJECT: project.name,
        planner.LABEL_SERVICE: service.name,
        planner.LABEL_NUMBER: str(number),
        planner.LABEL_ONEOFF: "True" if oneoff else "False",
        planner.LABEL_CONFIG_HASH: config_hash(service),
        planner.LABEL_WORKING_DIR: project.working_dir,
        planner.LABEL_CONFIG_FILES: ",".join(project.config_files),
        planner.LABEL_VERSION: f"moor-{__version__}",
    }
    if image_id:
        labels[planner.LABEL_IMAGE] = image_id
    if service.depends_on:
        labels[planner.LABEL_DEPENDS_ON] = ",".join(
            f"{dep}:{spec.condition}:{str(spec.restart).lower()}"
            for dep, spec in sorted(service.depends_on.items())
        )
    return labels


def network_mode(service: Service, containers_of: Mapping[str, str] | None = None) -> str:
    """``HostConfig.NetworkMode``: the first network, or the service's ``network_mode``
    (``service:NAME`` as ``container:`` the first container of NAME)."""
    mode = service.network_mode
    if mode is None:
        return service.networks[0].name if service.networks else "bridge"
    if mode.startswith("service:"):
        target = (containers_of or {}).get(mode[8:])
        return f"container:{target}" if target else "none"
    return mode


def create_body(
    project: Project,
    service: Service,
    number: int,
    *,
    oneoff: bool = False,
    image_id: str = "",
    command: Sequence[str] | None = None,
    entrypoint: Sequence[str] | None = None,
    environment: Mapping[str, str] | None = None,
    user: str | None = None,
    working_dir: str | None = None,
    tty: bool | None = None,
    stdin_open: bool | None = None,
    containers_of: Mapping[str, str] | None = None,
    publish: bool = True,
) -> dict[str, Any]:
    """The create body of container ``number`` of ``service`` (see the module doc);
    the keyword arguments are ``run``'s overrides."""
    env = {**service.environment, **(environment or {})}
    body: dict[str, Any] = {
        "Image": service.image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {
            **service.labels,
            **compose_labels(project, service, number, oneoff=oneoff, image_id=image_id),
        },
        "Tty": service.tty if tty is None else tty,
        "OpenStdin": service.stdin_open if stdin_open is None else stdin_open,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
    }
    cmd = command if command is not None else service.command
    if cmd is not None:
        body["Cmd"] = list(cmd)
    entry = entrypoint if entrypoint is not None else service.entrypoint
    if entry is not None:
        body["Entrypoint"] = list(entry) or [""]
    for key, value in (
        ("User", user or service.user),
        ("WorkingDir", working_dir or service.working_dir),
        ("Hostname", service.hostname),
        ("Domainname", service.domainname),
        ("StopSignal", service.stop_signal),
    ):
        if value:
            body[key] = value
    if service.stop_grace_period is not None:
        body["StopTimeout"] = math.ceil(service.stop_grace_period)
    if service.healthcheck_disabled:
        body["Healthcheck"] = {"Test": ["NONE"]}
    elif service.healthcheck is not None:
        body["Healthcheck"] = _healthcheck(service.healthcheck)
    exposed = {_port_key(e) for e in service.expose}
    exposed |= {f"{p.target}/{p.protocol}" for p in service.ports}
    if exposed:
        body["ExposedPorts"] = {key: {} for key in sorted(exposed)}
    body["HostConfig"] = _host_config(service, containers_of, publish)
    if service.network_mode is None and service.networks:
        endpoints: dict[str, Any] = {}
        for net in service.networks:
            endpoint: dict[str, Any] = {
                "Aliases": list(dict.fromkeys([service.name, *net.aliases]))
                if not oneoff
                else list(net.aliases)
            }
            if net.ipv4_address:
                endpoint["IPAMConfig"] = {"IPv4Address": net.ipv4_address}
            endpoints[net.name] = endpoint
        body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body


def _port_key(text: str) -> str:
    port, _, protocol = text.partition("/")
    return f"{port}/{protocol or 'tcp'}"


def _healthcheck(hc: Healthcheck) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if hc.test is not None:
        out["Test"] = list(hc.test)
    for key, value in (
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ):
        if value is not None:
            out[key] = int(value * _NS)
    if hc.retries is not None:
        out["Retries"] = hc.retries
    return out


def _host_config(
    service: Service, containers_of: Mapping[str, str] | None, publish: bool
) -> dict[str, Any]:
    host: dict[str, Any] = {"NetworkMode": network_mode(service, containers_of)}
    if publish and service.ports:
        bindings: dict[str, list[dict[str, str]]] = {}
        for port in service.ports:
            bindings.setdefault(f"{port.target}/{port.protocol}", []).append(
                {"HostIp": port.host_ip or "", "HostPort": port.published or ""}
            )
        host["PortBindings"] = bindings
    binds = [_bind(m) for m in service.mounts if m.type == "bind" and m.create_host_path]
    mounts = [_mount(m) for m in service.mounts if not (m.type == "bind" and m.create_host_path)]
    if binds:
        host["Binds"] = binds
    if mounts:
        host["Mounts"] = mounts
    if service.tmpfs:
        host["Tmpfs"] = {path: opts for path, _, opts in (t.partition(":") for t in service.tmpfs)}
    if service.restart:
        name, _, count = service.restart.partition(":")
        host["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    for key, value in (
        ("ReadonlyRootfs", service.read_only),
        ("Privileged", service.privileged),
        ("Memory", service.memory),
        ("MemoryReservation", service.memory_reservation),
        ("MemorySwap", service.memswap),
        ("CpuShares", service.cpu_shares),
        ("PidsLimit", service.pids),
        ("ShmSize", service.shm_size),
        ("OomScoreAdj", service.oom_score_adj),
    ):
        if value:
            host[key] = value
    if service.init is not None:
        host["Init"] = service.init
    if service.cpus:
        host["NanoCpus"] = int(service.cpus * _NS)
    for key, items in (
        ("CapAdd", service.cap_add),
        ("CapDrop", service.cap_drop),
        ("SecurityOpt", service.security_opt),
        ("Dns", service.dns),
        ("DnsSearch", service.dns_search),
        ("DnsOptions", service.dns_opt),
    ):
        if items:
            host[key] = list(items)
    if service.extra_hosts:
        host["ExtraHosts"] = [f"{h}:{ip}" for h, ip in service.extra_hosts.items()]
    if service.sysctls:
        host["Sysctls"] = dict(service.sysctls)
    if service.ulimits:
        host["Ulimits"] = [
            {"Name": name, "Soft": limit["soft"], "Hard": limit["hard"]}
            for name, limit in service.ulimits.items()
        ]
    if service.logging:
        host["LogConfig"] = {
            "Type": service.logging.get("driver") or "json-file",
            "Config": dict(service.logging.get("options") or {}),
        }
    return host


def _bind(mount: Mount) -> str:
    options = ["ro" if mount.read_only else "rw"]
    if mount.propagation:
        options.append(mount.propagation)
    return f"{mount.source}:{mount.target}:{','.join(options)}"


def _mount(mount: Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": mount.type, "Target": mount.target}
    if mount.source:
        out["Source"] = mount.source
    if mount.read_only:
        out["ReadOnly"] = True
    if mount.type == "bind" and mount.propagation:
        out["BindOptions"] = {"Propagation": mount.propagation}
    if mount.type == "volume" and mount.nocopy:
        out["VolumeOptions"] = {"NoCopy": True}
    if mount.type == "tmpfs":
        options: dict[str, Any] = {}
        if mount.tmpfs_size is not None:
            options["SizeBytes"] = mount.tmpfs_size
        if mount.tmpfs_mode is not None:
            options["Mode"] = mount.tmpfs_mode
        if options:
            out["TmpfsOptions"] = options
    return out
