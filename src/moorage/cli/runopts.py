"""What people type to ``moor create``/``moor run``, read the docker CLI's way.

Everything here is pure: flags in, the body of ``POST /containers/create`` out
(``Config`` fields at the top level, ``HostConfig`` and ``NetworkingConfig``
beside them, as docker CLI 28 sends it). A bad value raises
:class:`InvalidArgument` naming the flag and the value, before anything reaches
the daemon; the CLI turns it into docker's ``moor: ...`` and exit status 125.

Values keep docker's units and syntax: memory sizes are binary (``512m``,
``1.5g``, ``1GiB``), CPU counts are rational (``1.5``, ``3/2``), durations are
Go's (``1m30s``, ``500ms``), ports are ``[ip:][host:]container[/proto]`` with
ranges, mounts are the csv ``type=bind,source=...,target=...``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from moorage.errors import InvalidArgument

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

Lookup = Callable[[str], "str | None"]

# --------------------------------------------------------------------------- the flags


@dataclass
class CreateFlags:
    """The flags of ``create``/``run`` as typed; None means "not given"."""

    name: str | None = None
    detach: bool = False
    interactive: bool = False
    tty: bool = False
    rm: bool = False
    hostname: str | None = None
    user: str | None = None
    workdir: str | None = None
    entrypoint: str | None = None  # "" resets the image's entrypoint
    env: tuple[str, ...] = ()
    env_file: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    label_file: tuple[str, ...] = ()
    read_only: bool = False
    tmpfs: tuple[str, ...] = ()
    volume: tuple[str, ...] = ()
    mount: tuple[str, ...] = ()
    memory: str | None = None
    memory_swap: str | None = None
    cpus: str | None = None
    cpu_shares: str | None = None
    pids_limit: str | None = None
    shm_size: str | None = None
    oom_score_adj: str | None = None
    restart: str = "no"
    health_cmd: str | None = None
    health_interval: str | None = None
    health_timeout: str | None = None
    health_start_period: str | None = None
    health_start_interval: str | None = None
    health_retries: str | None = None
    no_healthcheck: bool = False
    init: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    stop_signal: str | None = None
    stop_timeout: str | None = None
    ulimit: tuple[str, ...] = ()
    privileged: bool = False
    log_driver: str | None = None
    log_opt: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    publish_all: bool = False
    expose: tuple[str, ...] = ()
    network: str | None = None
    network_alias: tuple[str, ...] = ()
    ip: str | None = None
    dns: tuple[str, ...] = ()
    add_host: tuple[str, ...] = ()
    sysctl: tuple[str, ...] = ()
    platform: str | None = None
    pull: str = "missing"


class CreateRequest(NamedTuple):
    name: str | None  # the ?name= of the request
    body: dict[str, Any]
    platform: str | None  # "os/arch[/variant]", checked against the image by the caller
    pull: str  # "missing", "never" or "always"


def build_create(
    flags: CreateFlags,
    image: str,
    args: Iterable[str],
    *,
    environ: Mapping[str, str],
    cwd: str,
    console_size: tuple[int, int] | None = None,
) -> CreateRequest:
    """The create request for ``moor create|run [flags] IMAGE [COMMAND] [ARG...]``.

    ``environ`` answers ``-e NAME`` and env-file lines without a value; ``cwd``
    makes ``-v ./dir:/x`` absolute. ``console_size`` is (rows, columns) of the
    caller's terminal, for a TTY.
    """
    pull = parse_pull(flags.pull)
    check_image(image)
    config = _config(flags, image, list(args), environ, cwd)
    host = _host_config(flags, cwd)
    binds, volumes = parse_volumes(flags.volume, cwd)
    if binds:
        host["Binds"] = binds
    if volumes:
        config["Volumes"] = volumes
    exposed, bindings = parse_ports(flags.publish, flags.expose)
    if exposed:
        config["ExposedPorts"] = exposed
    host["PortBindings"] = bindings
    if console_size is not None and flags.tty:
        host["ConsoleSize"] = list(console_size)
    if flags.rm and host["RestartPolicy"]["Name"] not in ("", "no"):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    body = {**config, "HostConfig": host, "NetworkingConfig": _networking(flags)}
    return CreateRequest(flags.name or None, body, _platform(flags.platform), pull)


def _config(
    flags: CreateFlags, image: str, args: list[str], environ: Mapping[str, str], cwd: str
) -> dict[str, Any]:
    attach_stdin = flags.interactive and not flags.detach
    config: dict[str, Any] = {
        "Hostname": flags.hostname or "",
        "User": flags.user or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": not flags.detach,
        "AttachStderr": not flags.detach,
        "Tty": flags.tty,
        "OpenStdin": flags.interactive,
        # Attached stdin closes the container's stdin when the client's ends.
        "StdinOnce": attach_stdin,
        "Env": parse_env(flags.env, flags.env_file, environ.get),
        "Cmd": args or None,
        "Image": image,
        "WorkingDir": flags.workdir or "",
        "Entrypoint": None if flags.entrypoint is None else [flags.entrypoint],
        "Labels": parse_labels(flags.label, flags.label_file),
    }
    if flags.stop_signal:
        config["StopSignal"] = flags.stop_signal
    if flags.stop_timeout is not None:
        config["StopTimeout"] = parse_int(flags.stop_timeout, "--stop-timeout")
    health = parse_healthcheck(flags)
    if health is not None:
        config["Healthcheck"] = health
    return config


def _host_config(flags: CreateFlags, cwd: str) -> dict[str, Any]:
    masked: list[str] | None = None
    security = parse_security_opts(flags.security_opt)
    if "systempaths=unconfined" in security:
        # Handled by the client, as docker does: empty lists unmask every path.
        security = [o for o in security if o != "systempaths=unconfined"]
        masked = []
    host: dict[str, Any] = {
        "LogConfig": parse_log_config(flags.log_driver, flags.log_opt),
        "NetworkMode": _network_mode(flags.network),
        "RestartPolicy": parse_restart_policy(flags.restart),
        "AutoRemove": flags.rm,
        "CapAdd": list(flags.cap_add) or None,
        "CapDrop": list(flags.cap_drop) or None,
        "Dns": [parse_ip(d, "--dns") for d in flags.dns],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": [parse_extra_host(h) for h in flags.add_host] or None,
        "OomScoreAdj": parse_int(flags.oom_score_adj, "--oom-score-adj"),
        "Privileged": flags.privileged,
        "PublishAllPorts": flags.publish_all,
        "ReadonlyRootfs": flags.read_only,
        "SecurityOpt": security or None,
        "Tmpfs": parse_tmpfs(flags.tmpfs) or None,
        "Mounts": [parse_mount(m, cwd) for m in flags.mount] or None,
        "Memory": parse_memory(flags.memory, "-m, --memory"),
        "MemorySwap": parse_memory_swap(flags.memory_swap),
        "NanoCpus": parse_cpus(flags.cpus),
        "CpuShares": parse_int(flags.cpu_shares, "-c, --cpu-shares"),
        "Ulimits": parse_ulimits(flags.ulimit) or None,
        "Sysctls": parse_sysctls(flags.sysctl) or None,
        "ShmSize": parse_memory(flags.shm_size, "--shm-size"),
    }
    if flags.pids_limit is not None:
        host["PidsLimit"] = parse_int(flags.pids_limit, "--pids-limit")
    if flags.init:
        host["Init"] = True
    if masked is not None:
        host["MaskedPaths"] = masked
        host["ReadonlyPaths"] = []
    return host


# --------------------------------------------------------------------------- scalars


def flag_error(flag: str, value: str, reason: str) -> InvalidArgument:
    """pflag's wording: ``invalid argument "3x" for "-m, --memory" flag: ...``."""
    return InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: {reason}')


def parse_int(value: str | None, flag: str) -> int:
    if value is None:
        return 0
    text = value.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise flag_error(flag, value, f'strconv.ParseInt: parsing "{value}": invalid syntax')
    return int(text)


_DECIMAL = {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
_BINARY = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def ram_in_bytes(text: str) -> int:
    """go-units' RAMInBytes: ``512m``, ``1.5g``, ``1GiB``, ``100kb``, ``42`` (bytes)."""
    return _parse_size(text, _BINARY)


def from_human_size(text: str) -> int:
    """go-units' FromHumanSize: the decimal variant (``1kB`` is 1000)."""
    return _parse_size(text, _DECIMAL)


def _parse_size(text: str, units: Mapping[str, int]) -> int:
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    if text[sep] != " ":
        number, suffix = text[: sep + 1], text[sep + 1 :]
    else:
        number, suffix = text[:sep], text[sep + 1 :]
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", number):
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax')
    size = float(number)
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    if not suffix:
        return int(size)
    lowered = suffix.lower()
    if len(suffix) > 3 or (lowered[0] != "b" and lowered[0] not in units):
        raise ValueError(f"invalid suffix: '{suffix}'")
    if lowered[0] == "b":
        if len(lowered) > 1:
            raise ValueError(f"invalid suffix: '{suffix}'")
        return int(size)
    if (len(lowered) == 2 and lowered[1] != "b") or (len(lowered) == 3 and lowered[1:] != "ib"):
        raise ValueError(f"invalid suffix: '{suffix}'")
    return int(size * units[lowered[0]])


def parse_memory(value: str | None, flag: str) -> int:
    if value is None:
        return 0
    try:
        return ram_in_bytes(value)
    except (ValueError, OverflowError) as exc:
        raise flag_error(flag, value, str(exc)) from None


def parse_memory_swap(value: str | None) -> int:
    """``--memory-swap``: a size, or ``-1`` for unlimited swap."""
    if value == "-1":
        return -1
    return parse_memory(value, "--memory-swap")


def parse_cpus(value: str | None) -> int:
    """``--cpus 1.5`` as NanoCpus, exactly: a value finer than 1e-9 CPU is refused."""
    if value is None:
        return 0
    try:
        from fractions import Fraction

        cpus = Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        raise flag_error("--cpus", value, f"failed to parse {value} as a rational number") from None
    nano = cpus * 1_000_000_000
    if nano.denominator != 1:
        raise flag_error("--cpus", value, "value is too precise")
    return int(nano)


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # noqa: RUF001 - Go accepts both micro signs
    "μs": 1_000,  # noqa: RUF001
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")
_DURATION_UNIT = re.compile(r"[^\d.]*")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: ``30s``, ``1m30s``, ``500ms``, ``-1.5h``."""
    rest = text
    negative = False
    if rest[:1] in ("+", "-"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0
    while rest:
        number = _DURATION_NUMBER.match(rest)
        assert number is not None  # the pattern matches the empty string
        whole, fraction = number.group(1), number.group(2)
        if not whole and not fraction:
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[number.end() :]
        unit_match = _DURATION_UNIT.match(rest)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        rest = rest[len(unit) :]
        scale = _DURATION_UNITS[unit]
        total += int(whole or 0) * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
    return -total if negative else total


def _duration_flag(value: str | None, flag: str) -> int:
    if value is None:
        return 0
    try:
        ns = parse_duration(value)
    except ValueError as exc:
        raise flag_error(flag, value, str(exc)) from None
    if ns < 0:
        raise InvalidArgument(f"{flag} cannot be negative")
    return ns


# --------------------------------------------------------------------------- env, labels


def parse_env(env: Iterable[str], env_files: Iterable[str], lookup: Lookup) -> list[str]:
    """Env-file lines first, then ``-e`` (later values win in the daemon).

    ``-e NAME`` takes NAME from the client's environment and is left out when it
    is not set there, like a bare NAME in an env file.
    """
    out: list[str] = []
    for path in env_files:
        out += read_kv_file(path, lookup, what="env")
    for item in env:
        key, sep, _ = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid environment variable: {item}")
        if sep:
            out.append(item)
        elif (value := lookup(key)) is not None:
            out.append(f"{key}={value}")
    return out


def read_kv_file(path: str, lookup: Lookup | None, *, what: str) -> list[str]:
    """Docker's env-file rules: ``#`` comments, blank lines, ``KEY=value`` taken
    verbatim (no quotes, no expansion), a bare ``KEY`` from ``lookup`` (dropped if
    unset there), and no whitespace inside a key."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise InvalidArgument(f"--{what}-file: open {path}: {reason}") from None
    try:
        return parse_kv_lines(raw, lookup)
    except ValueError as exc:
        raise InvalidArgument(f"--{what}-file: invalid {what} file ({path}): {exc}") from None


def parse_kv_lines(raw: bytes, lookup: Lookup | None) -> list[str]:
    out: list[str] = []
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line starts no new one
    for number, data in enumerate(lines, start=1):
        data = data.removesuffix(b"\r")
        if number == 1:
            data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            line = data.decode("utf-8").lstrip()
        except UnicodeDecodeError:
            raise ValueError(f"invalid utf8 bytes at line {number}: {list(data)}") from None
        if not line or line.startswith("#"):
            continue
        key, sep, _ = line.partition("=")
        if not key:
            raise ValueError(f"no variable name on line '{line}'")
        if " " in key or "\t" in key:
            raise ValueError(f"variable '{key}' contains whitespaces")
        if sep:
            out.append(line)
        elif lookup is not None and (value := lookup(line)) is not None:
            out.append(f"{key}={value}")
    return out


def parse_labels(labels: Iterable[str], label_files: Iterable[str]) -> dict[str, str]:
    items: list[str] = []
    for path in label_files:
        items += read_kv_file(path, None, what="label")
    for label in labels:
        key = label.partition("=")[0].lstrip(" \t")
        if not key:
            raise InvalidArgument(f"invalid label '{label}': empty name")
        if " " in key or "\t" in key:
            raise InvalidArgument(f"label '{key}' contains whitespaces")
        items.append(label)
    return dict(_key_value(item) for item in items)


def _key_value(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key, value


# --------------------------------------------------------------------------- volumes, mounts

_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
_VOLUME_MODES = frozenset({"ro", "rw", "z", "Z", "nocopy"}) | _PROPAGATIONS


def parse_volumes(specs: Iterable[str], cwd: str) -> tuple[list[str], dict[str, Any]]:
    """``-v`` as docker sends it: binds and named volumes go to ``HostConfig.Binds``
    (a ``./dir`` source made absolute); a bare ``/path`` is an anonymous volume in
    ``Config.Volumes``."""
    binds: list[str] = []
    anonymous: dict[str, Any] = {}
    for spec in specs:
        source, target, mode = _split_volume(spec)
        _check_volume(spec, source, target, mode)
        if not source:
            anonymous[target] = {}
            continue
        if source.startswith("."):
            source = os.path.normpath(os.path.join(cwd, source))
        binds.append(":".join(p for p in (source, target, mode) if p))
    return binds, anonymous


def _split_volume(spec: str) -> tuple[str, str, str]:
    if not spec:
        raise InvalidArgument("invalid empty volume spec")
    parts = spec.split(":")
    if any(not p for p in parts):
        raise InvalidArgument(f"invalid spec: {spec}: empty section between colons")
    if len(parts) > 3:
        raise InvalidArgument(f"invalid spec: {spec}: too many colons")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return parts[0], parts[1], ""
    return parts[0], parts[1], parts[2]


def _check_volume(spec: str, source: str, target: str, mode: str) -> None:
    where = f"invalid volume specification: '{spec}'"
    if not target.startswith("/"):
        raise InvalidArgument(
            f"{where}: invalid mount path: '{target}' mount path must be absolute"
        )
    if os.path.normpath(target) == "/":
        raise InvalidArgument(f"{where}: invalid specification: destination can't be '/'")
    for option in (o for o in mode.split(",") if o):
        if option not in _VOLUME_MODES:
            raise InvalidArgument(f"{where}: invalid mode: {option}")
    is_path = source.startswith(("/", "."))
    if source and not is_path and not _VOLUME_NAME.fullmatch(source):
        raise InvalidArgument(
            f'{where}: "{source}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )


def parse_tmpfs(specs: Iterable[str]) -> dict[str, str]:
    """``--tmpfs /run:size=64m,mode=1777`` -> ``{"/run": "size=64m,mode=1777"}``."""
    out: dict[str, str] = {}
    for spec in specs:
        path, _, options = spec.partition(":")
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid tmpfs specification: '{spec}': path must be absolute")
        out[path] = options
    return out


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _go_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"invalid value for {key}: {value}")


def parse_mount(spec: str, cwd: str) -> dict[str, Any]:
    """``--mount type=bind,source=/src,target=/dst,readonly`` as a ``HostConfig.Mounts`` entry."""
    import csv

    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise InvalidArgument(f"invalid mount specification: '{spec}'") from None
    mount: dict[str, Any] = {"Type": "volume"}
    options: dict[str, dict[str, Any]] = {}
    for item in fields:
        _apply_mount_field(mount, options, item, cwd)
    for kind, values in options.items():
        if kind != mount["Type"]:
            raise InvalidArgument(
                f"invalid mount specification: '{spec}': cannot mix '{kind}-*' options "
                f"with mount type '{mount['Type']}'"
            )
        mount[f"{kind.capitalize()}Options"] = values
    _check_mount(spec, mount)
    return mount


def _apply_mount_field(
    mount: dict[str, Any], options: dict[str, dict[str, Any]], item: str, cwd: str
) -> None:
    key, has_value, value = item.partition("=")
    key = key.lower()
    if not has_value:
        if key in ("readonly", "ro"):
            mount["ReadOnly"] = True
        elif key == "volume-nocopy":
            options.setdefault("volume", {})["NoCopy"] = True
        else:
            raise InvalidArgument(f"invalid field '{item}' must be a key=value pair")
        return
    if key == "type":
        mount["Type"] = value.lower()
    elif key in ("source", "src"):
        is_relative = value.startswith(".")
        mount["Source"] = os.path.normpath(os.path.join(cwd, value)) if is_relative else value
    elif key in ("target", "dst", "destination"):
        mount["Target"] = value
    elif key in ("readonly", "ro"):
        mount["ReadOnly"] = _go_bool(key, value)
    elif key == "consistency":
        mount["Consistency"] = value.lower()
    elif key == "bind-propagation":
        options.setdefault("bind", {})["Propagation"] = value.lower()
    elif key == "bind-recursive":
        _bind_recursive(options.setdefault("bind", {}), value)
    elif key == "volume-nocopy":
        options.setdefault("volume", {})["NoCopy"] = _go_bool(key, value)
    elif key == "volume-subpath":
        options.setdefault("volume", {})["Subpath"] = value
    elif key == "volume-label":
        label_key, _, label_value = value.partition("=")
        options.setdefault("volume", {}).setdefault("Labels", {})[label_key] = label_value
    elif key == "volume-driver":
        options.setdefault("volume", {}).setdefault("DriverConfig", {})["Name"] = value
    elif key == "volume-opt":
        driver = options.setdefault("volume", {}).setdefault("DriverConfig", {})
        opt_key, _, opt_value = value.partition("=")
        driver.setdefault("Options", {})[opt_key] = opt_value
    elif key == "tmpfs-size":
        try:
            options.setdefault("tmpfs", {})["SizeBytes"] = ram_in_bytes(value)
        except (ValueError, OverflowError):
            raise InvalidArgument(f"invalid value for {key}: {value}") from None
    elif key == "tmpfs-mode":
        try:
            options.setdefault("tmpfs", {})["Mode"] = int(value, 8)
        except ValueError:
            raise InvalidArgument(f"invalid value for {key}: {value}") from None
    else:
        raise InvalidArgument(f"unexpected key '{key}' in '{item}'")


def _bind_recursive(bind: dict[str, Any], value: str) -> None:
    if value == "disabled":
        bind["NonRecursive"] = True
    elif value == "writable":
        bind["ReadOnlyNonRecursive"] = True
    elif value == "readonly":
        bind["ReadOnlyForceRecursive"] = True
    elif value != "enabled":
        raise InvalidArgument(
            f"invalid value for bind-recursive: {value} "
            '(must be "enabled", "disabled", "writable", or "readonly")'
        )


def _check_mount(spec: str, mount: dict[str, Any]) -> None:
    where = f"invalid mount specification: '{spec}'"
    kind, target, source = mount["Type"], mount.get("Target", ""), mount.get("Source", "")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"{where}: unsupported mount type '{kind}'")
    if not target:
        raise InvalidArgument(f"{where}: target is required")
    if not target.startswith("/"):
        raise InvalidArgument(
            f"{where}: invalid mount path: '{target}' mount path must be absolute"
        )
    if kind == "bind" and not source.startswith("/"):
        raise InvalidArgument(
            f"{where}: invalid mount path: '{source}' mount path must be absolute"
        )
    if kind == "tmpfs" and source:
        raise InvalidArgument(f"{where}: source must not be specified for a tmpfs mount")
    bind = mount.get("BindOptions", {})
    read_only = mount.get("ReadOnly", False)
    if bind.get("ReadOnlyNonRecursive") and not read_only:
        raise InvalidArgument(
            "option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction"
        )
    if bind.get("ReadOnlyForceRecursive") and not read_only:
        raise InvalidArgument(
            "option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction"
        )


# --------------------------------------------------------------------------- ports

_PROTOCOLS = ("tcp", "udp", "sctp")


def parse_ports(
    publish: Iterable[str], expose: Iterable[str]
) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """``-p`` and ``--expose`` as ``Config.ExposedPorts`` and ``HostConfig.PortBindings``."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in publish:
        for port, binding in parse_port_spec(_standard_notation(spec)):
            exposed[port] = {}
            bindings.setdefault(port, []).append(binding)
    for spec in expose:
        for port in parse_expose(spec):
            exposed[port] = {}
    return exposed, bindings


def _standard_notation(spec: str) -> str:
    """The long syntax ``published=8080,target=80,protocol=udp`` as ``8080:80/udp``."""
    if "=" not in spec:
        return spec
    params = {"protocol": "tcp"}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(
                f"invalid publish opts format (should be name=value but got '{item}')"
            )
        params[key] = value
    return f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}"


def parse_port_spec(spec: str) -> list[tuple[str, dict[str, str]]]:
    """``[ip:][host[-range]:]container[-range][/proto]`` -> [("80/tcp", binding), ...]."""
    try:
        return _port_mappings(spec)
    except ValueError as exc:
        raise InvalidArgument(f'invalid publish spec "{spec}": {exc}') from None


def _port_mappings(spec: str) -> list[tuple[str, dict[str, str]]]:
    parts = spec.split(":")
    if len(parts) == 1:
        ip, host_port, container = "", "", parts[0]
    elif len(parts) == 2:
        ip, host_port, container = "", parts[0], parts[1]
    else:
        ip, host_port, container = ":".join(parts[:-2]), parts[-2], parts[-1]
    proto, container = split_proto_port(container)
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            _ip_address(ip)
        except ValueError:
            raise ValueError(f"invalid IP address: {ip}") from None
    if not container:
        raise ValueError("no port specified")
    start, end = _port_range(container, "containerPort")
    host_start = host_end = 0
    if host_port:
        host_start, host_end = _port_range(host_port, "hostPort")
        if end - start != host_end - host_start and end != start:
            raise ValueError(
                f"invalid ranges specified for container and host Ports: {container} and "
                f"{host_port}"
            )
    count = end - start + 1
    out: list[tuple[str, dict[str, str]]] = []
    for i in range(count):
        host = ""
        if host_port:
            host = str(host_start + i)
            if count == 1 and host_start != host_end:
                host += f"-{host_end}"  # one container port, any free host port in the range
        out.append((f"{start + i}/{proto}", {"HostIp": ip, "HostPort": host}))
    return out


def split_proto_port(raw: str) -> tuple[str, str]:
    """``80/udp`` -> ("udp", "80"); the protocol defaults to tcp."""
    port, _, proto = raw.partition("/")
    proto = proto.partition("/")[0].lower() or "tcp"
    if not port:
        return proto, ""
    if proto not in _PROTOCOLS:
        raise ValueError(f"invalid proto: {proto}")
    return proto, port


def _port_range(text: str, what: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text)
    if match is None:
        raise ValueError(f"invalid {what}: {text}")
    start = int(match.group(1))
    end = int(match.group(2) or start)
    if start > 65535 or end > 65535:
        raise ValueError(f"invalid {what}: {text}")
    if end < start:
        raise ValueError(f"invalid range specified for port: {text}")
    return start, end


def parse_expose(spec: str) -> list[str]:
    """``--expose 80``, ``--expose 7000-7002/udp`` -> ["80/tcp"], [...]."""
    if ":" in spec:
        raise InvalidArgument(f"invalid port format for --expose: {spec}")
    try:
        proto, port = split_proto_port(spec)
        start, end = _port_range(port, "port")
    except ValueError as exc:
        raise InvalidArgument(f"invalid range format for --expose: {spec}, error: {exc}") from None
    return [f"{p}/{proto}" for p in range(start, end + 1)]


# --------------------------------------------------------------------------- host config


def parse_restart_policy(text: str) -> dict[str, Any]:
    """``no``, ``always``, ``unless-stopped``, ``on-failure[:N]``, checked as dockerd does."""
    if not text:
        return {"Name": "", "MaximumRetryCount": 0}
    name, colon, count_text = text.partition(":")
    if colon and not name:
        raise InvalidArgument("invalid restart policy format: no policy provided before colon")
    count = 0
    if count_text:
        if not re.fullmatch(r"[+-]?\d+", count_text):
            raise InvalidArgument(
                "invalid restart policy format: maximum retry count must be an integer"
            )
        count = int(count_text)
    if name in ("no", "always", "unless-stopped"):
        if count:
            message = (
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            )
            raise InvalidArgument(message + (" and cannot be negative" if count < 0 else ""))
    elif name == "on-failure":
        if count < 0:
            raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    else:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'"
        )
    return {"Name": name, "MaximumRetryCount": count}


def parse_healthcheck(flags: CreateFlags) -> dict[str, Any] | None:
    """``Config.Healthcheck``: ``{"Test": ["NONE"]}`` for --no-healthcheck, else the
    --health-* flags (durations in nanoseconds); None when none is given."""
    durations = {
        "Interval": (flags.health_interval, "--health-interval"),
        "Timeout": (flags.health_timeout, "--health-timeout"),
        "StartPeriod": (flags.health_start_period, "--health-start-period"),
        "StartInterval": (flags.health_start_interval, "--health-start-interval"),
    }
    given = flags.health_cmd or flags.health_retries is not None
    given = given or any(value is not None for value, _ in durations.values())
    if flags.no_healthcheck:
        if given:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    retries = parse_int(flags.health_retries, "--health-retries")
    if retries < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    health: dict[str, Any] = {
        "Test": ["CMD-SHELL", flags.health_cmd] if flags.health_cmd else None,
    }
    for key, (value, flag) in durations.items():
        health[key] = _duration_flag(value, flag)
    health["Retries"] = retries
    return health


_ULIMITS = frozenset(
    {
        "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
        "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
    }
)  # fmt: skip


def parse_ulimit(text: str) -> dict[str, Any]:
    """``nofile=1024:2048`` -> ``{"Name": "nofile", "Soft": 1024, "Hard": 2048}``."""
    name, sep, values = text.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid ulimit argument: {text}")
    if name not in _ULIMITS:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    limits = values.split(":")
    if len(limits) > 2:
        raise InvalidArgument(
            f"too many limit value arguments - {values}, can only have up to two, `soft[:hard]`"
        )
    numbers = []
    for limit in limits:
        if not re.fullmatch(r"[+-]?\d+", limit):
            raise InvalidArgument(f"invalid ulimit value in {text}: {limit!r} is not an integer")
        numbers.append(int(limit))
    soft, hard = numbers[0], numbers[-1]
    if hard != -1 and soft > hard:
        raise InvalidArgument(
            f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )
    return {"Name": name, "Soft": soft, "Hard": hard}


def parse_ulimits(specs: Iterable[str]) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for spec in specs:
        ulimit = parse_ulimit(spec)
        by_name[ulimit["Name"]] = ulimit  # a later flag for the same name wins
    return list(by_name.values())


def parse_security_opts(opts: Iterable[str]) -> list[str]:
    """``--security-opt``: ``key=value`` (or ``key:value``); a seccomp profile given as a
    file is sent as its compacted JSON, as the docker CLI does."""
    out: list[str] = []
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep and key != "no-new-privileges":
            key, sep, value = opt.partition(":")
        if (not sep or not value) and key != "no-new-privileges":
            raise InvalidArgument(f'invalid --security-opt: "{opt}"')
        if key == "seccomp" and value not in ("builtin", "unconfined"):
            opt = "seccomp=" + _compact_json_file(value)
        out.append(opt)
    return out


def _compact_json_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except OSError as exc:
        raise InvalidArgument(f"opening seccomp profile ({path}) failed: {exc.strerror}") from None
    except ValueError as exc:
        raise InvalidArgument(
            f"compacting json for seccomp profile ({path}) failed: {exc}"
        ) from None
    return json.dumps(data, separators=(",", ":"))


def parse_log_config(driver: str | None, opts: Iterable[str]) -> dict[str, Any]:
    """Only the json-file driver exists here: any other name is refused up front."""
    if driver not in (None, "", "json-file"):
        raise InvalidArgument(f'unsupported log driver "{driver}": moor supports only "json-file"')
    return {"Type": driver or "", "Config": dict(_key_value(o) for o in opts)}


def parse_ip(value: str, flag: str) -> str:
    try:
        return str(_ip_address(value.strip()))
    except ValueError:
        raise flag_error(flag, value, f"IP address is not correctly formatted: {value}") from None


def parse_extra_host(value: str) -> str:
    """``--add-host name:ip`` (or ``name=ip``; ``[v6]``, ``host-gateway``) -> ``name:ip``."""
    name, sep, address = value.partition("=")
    if not sep:
        name, sep, address = value.partition(":")
    if not sep or not name or ":" in name:
        raise flag_error("--add-host", value, f'bad format for add-host: "{value}"')
    if address != "host-gateway":
        if len(address) > 2 and address[0] == "[" and address[-1] == "]":
            address = address[1:-1]
        try:
            _ip_address(address)
        except ValueError:
            raise flag_error(
                "--add-host", value, f'invalid IP address in add-host: "{address}"'
            ) from None
    return f"{name}:{address}"


_NAMESPACED_SYSCTLS = frozenset(
    {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    }
)  # fmt: skip


def parse_sysctls(specs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        allowed = key in _NAMESPACED_SYSCTLS or key.startswith(("net.", "fs.mqueue."))
        if not sep or not key or not allowed:
            raise flag_error("--sysctl", spec, f"sysctl '{spec}' is not allowed")
        out[key] = value
    return out


def _network_mode(network: str | None) -> str:
    if not network:
        return "default"
    if "=" not in network:
        return network
    # The advanced syntax: only its name is honoured here.
    import csv

    fields = dict(_key_value(item) for item in next(csv.reader([network])))
    unknown = sorted(set(fields) - {"name"})
    if unknown:
        raise InvalidArgument(f"--network: option '{unknown[0]}' is not supported")
    if not fields.get("name"):
        raise InvalidArgument("--network: no name set for network")
    return fields["name"]


def _networking(flags: CreateFlags) -> dict[str, Any]:
    """As docker: the default network gets an (empty) endpoint; a named one is left
    to the daemon when no per-network option (``--network-alias``, ``--ip``) is given."""
    if not flags.network:
        if flags.network_alias:
            raise InvalidArgument(
                "network-scoped aliases are only supported for user-defined networks"
            )
        return {
            "EndpointsConfig": {"default": {"IPAMConfig": {"IPv4Address": flags.ip}}}
            if flags.ip
            else {"default": {}}
        }
    endpoint: dict[str, Any] = {}
    if flags.network_alias:
        endpoint["Aliases"] = list(flags.network_alias)
    if flags.ip:
        _ip_address(flags.ip)
        endpoint["IPAMConfig"] = {"IPv4Address": flags.ip}
    name = _network_mode(flags.network)
    return {"EndpointsConfig": {name: endpoint} if endpoint else {}}


# --------------------------------------------------------------------------- image, pull


_IMAGE_ID = re.compile(r"(sha256:)?[a-f0-9]{64}")


def check_image(image: str) -> None:
    """A name docker would take: a reference, or an image id."""
    if _IMAGE_ID.fullmatch(image):
        return
    from moorage.oci.reference import parse_reference

    parse_reference(image)


def parse_pull(value: str) -> str:
    if value not in ("always", "missing", "never", ""):
        raise InvalidArgument(
            f'invalid pull option: \'{value}\': must be one of "always", "missing" or "never"'
        )
    return value or "missing"


def _platform(value: str | None) -> str | None:
    """``--platform``: ``linux``, ``amd64`` or ``linux/arm64/v8``, as os/arch[/variant]."""
    if not value:
        return None
    from moorage.oci.platform import host_platform, parse_platform

    if "/" not in value:
        host = host_platform()
        value = f"{value}/{host.architecture}" if value == host.os else f"linux/{value}"
    return str(parse_platform(value))


def image_familiar_name(image: str) -> str:
    """``busybox`` -> ``busybox:latest``, as in docker's "Unable to find image" line."""
    if _IMAGE_ID.fullmatch(image):
        return image
    from moorage.oci.reference import parse_reference

    return parse_reference(image).familiar()


def pull_params(image: str) -> dict[str, str]:
    """The ``/images/create`` query that pulls ``image``: fromImage=NAME&tag=TAG|DIGEST."""
    from moorage.oci.reference import parse_reference

    ref = parse_reference(image)
    return {"fromImage": ref.name, "tag": str(ref.digest) if ref.digest else ref.tag or "latest"}


# --------------------------------------------------------------------------- times


def timestamp_arg(value: str, now: float | None = None) -> str:
    """Docker's --since/--until values as the API's UNIX timestamps.

    ``42m`` (a Go duration: that long ago), ``2013-01-02T13:23:37Z`` (RFC 3339, with
    or without fraction and zone; no zone means local time), ``2013-01-02``, or a
    UNIX timestamp ``1700000000[.123]`` passed through.
    """
    reference = time.time() if now is None else now
    if value != "0":
        try:
            return str(int(reference - parse_duration(value) / 1e9))
        except ValueError:
            pass
    whole, nanos = _split_fraction(value)
    moment = _parse_time(whole)
    if moment is not None:
        # The fraction is kept to the nanosecond, as the log lines' timestamps have it:
        # a --until cut to microseconds would drop the line at exactly that time.
        seconds = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
        return f"{seconds}.{nanos:09d}"
    if "-" in value or not re.fullmatch(r"\d+(\.\d{1,9})?", value):
        raise InvalidArgument(f'failed to parse value as time or duration: "{value}"')
    return value


_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H")


def _split_fraction(value: str) -> tuple[str, int]:
    """``2013-01-02T13:23:37.123456789Z`` as (the time without its fraction, 123456789)."""
    match = re.search(r"(T\d\d:\d\d:\d\d)\.(\d+)", value)
    if match is None:
        return value, 0
    digits = match.group(2)[:9].ljust(9, "0")
    return value[: match.end(1)] + value[match.end() :], int(digits)


def _parse_time(value: str) -> datetime | None:
    if not re.match(r"\d{4}-\d{2}-\d{2}", value):
        return None
    has_zone = any(c in value for c in "zZ+") or value.count("-") == 3
    text = value
    if has_zone:
        text = re.sub(r"[zZ]$", "+00:00", text)
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Python keeps microseconds
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(f'failed to parse value as time or duration: "{value}"') from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    for fmt in (*_LOCAL_FORMATS, "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).astimezone()
        except ValueError:
            continue
    raise InvalidArgument(f'failed to parse value as time or duration: "{value}"')


def _ip_address(text: str) -> IPv4Address | IPv6Address:
    import ipaddress  # here: most commands have no address to check

    return ipaddress.ip_address(text)
