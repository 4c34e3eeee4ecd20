"""The compose file's schema: each key's check and its canonical (long) form.

:func:`normalize_file` takes one file's tree (after interpolation) and returns it in
canonical form, so that files merge key by key and the model reads one shape:
``environment`` and ``labels`` as mappings, ``ports`` and ``volumes`` in their long
syntax, ``depends_on`` and ``networks`` as mappings, ``build`` as a mapping,
``command`` and ``entrypoint`` as lists (a string is split as a shell would).
Unknown keys, wrong types and bad values raise :class:`Invalid` with the dotted path
of the key (``services.web.ports[0]``); the loader adds the file's name. A file may
be a fragment (an override file): nothing is required here; the model checks what
must be there once the files are merged.

YAML's ``!reset`` and ``!override`` tags arrive as :class:`Reset` and
:class:`Override` and are kept for the merge.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

__all__ = [
    "Invalid",
    "Override",
    "Reset",
    "normalize_file",
    "parse_bytes",
    "parse_duration",
]


class Invalid(Exception):
    """A value the schema refuses, at ``path``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class Reset:
    """``!reset``: the merge removes the key."""

    def __repr__(self) -> str:
        return "Reset()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reset)

    def __hash__(self) -> int:
        return hash(Reset)


class Override:
    """``!override VALUE``: the merge replaces the key's value instead of merging it."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def rewrap(self, value: Any) -> Override:
        return Override(value)

    def __repr__(self) -> str:
        return f"Override({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Override) and other.value == self.value

    def __hash__(self) -> int:
        return hash(repr(self))


Check = Callable[[Any, str], Any]
SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]*")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BYTES = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(b|ib)?", re.IGNORECASE)
_RESTART = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")
_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
_PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")


# --- scalars -------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _wrong(path: str, want: str, value: Any) -> Invalid:
    return Invalid(path, f"must be {want}, not {_type_name(value)}")


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _wrong(path, "a string", value)
    return value


def scalar_string(value: Any, path: str) -> str:
    """A string, or a number written without quotes (``user: 1000``)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _wrong(path, "a string", value)
    return str(value)


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong(path, "a boolean", value)
    return value


def integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise _wrong(path, "an integer", value)
    return int(value)


def non_negative(value: Any, path: str) -> int:
    number = integer(value, path)
    if number < 0:
        raise Invalid(path, f"must not be negative, not {number}")
    return number


def number(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise _wrong(path, "a number", value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _wrong(path, "a number", value)


def parse_duration(text: str) -> float:
    """Go's duration syntax (``1m30s``, ``500ms``) in seconds; ValueError if malformed."""
    text = text.strip()
    if not text:
        raise ValueError(text)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total, pos = 0.0, 0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise ValueError(text)
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


def duration(value: Any, path: str) -> str:
    """A duration, kept as written (numbers as seconds): ``"1m30s"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value}s"
    text = string(value, path)
    try:
        parse_duration(text)
    except ValueError:
        raise Invalid(path, f'invalid duration "{text}" (want e.g. 10s, 1m30s, 500ms)') from None
    return text


def parse_bytes(text: str) -> int:
    """``512m``, ``1g``, ``1.5GB``, ``100kb`` in bytes (binary multiples, as docker); ValueError."""
    match = _BYTES.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    power = " kmgtp".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024**power)


def byte_size(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = string(value, path)
    try:
        return parse_bytes(text)
    except ValueError:
        raise Invalid(path, f'invalid size "{text}" (want e.g. 512m, 1g)') from None


def string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise _wrong(path, "a list", value)
    return [scalar_string(item, f"{path}[{i}]") for i, item in enumerate(value)]


def string_or_list(value: Any, path: str) -> list[str]:
    return [scalar_string(value, path)] if isinstance(value, str) else string_list(value, path)


def command(value: Any, path: str) -> list[str] | None:
    """``command``/``entrypoint``: a list, or a string split as a shell does."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise Invalid(path, f"cannot split {value!r}: {exc}") from None
    return string_list(value, path)


def choice(*allowed: str) -> Check:
    def check(value: Any, path: str) -> str:
        text = string(value, path)
        if text not in allowed:
            raise Invalid(path, f'"{text}" is not one of {", ".join(allowed)}')
        return text

    return check


def mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(path, "a mapping", value)
    for key in value:
        if not isinstance(key, str):
            raise Invalid(path, f"key {key!r} must be a string")
    return value


def _fields(value: Any, path: str, checks: dict[str, Check], *, extensions: bool = True) -> Any:
    """A mapping whose keys are all known, each checked (``x-`` keys pass through)."""
    if isinstance(value, Reset):
        return value
    if isinstance(value, Override):
        return Override(_fields(value.value, path, checks, extensions=extensions))
    out: dict[str, Any] = {}
    for key, item in mapping(value, path).items():
        where = _join(path, key)
        if extensions and key.startswith("x-"):
            out[key] = item
            continue
        check = checks.get(key)
        if check is None:
            raise Invalid(where, _unknown(key, checks))
        out[key] = _apply(check, item, where)
    return out


def _apply(check: Check, value: Any, path: str) -> Any:
    if isinstance(value, Reset):
        return value
    if isinstance(value, Override):
        return Override(check(value.value, path))
    return check(value, path)


def _unknown(key: str, checks: dict[str, Check]) -> str:
    close = [k for k in checks if k.replace("_", "") == key.replace("_", "").replace("-", "")]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _keyed(value: Any, path: str, item: Check) -> dict[str, Any]:
    """A mapping whose values are all checked by ``item`` (keys are names)."""
    return {k: _apply(item, v, _join(path, k)) for k, v in mapping(value, path).items()}


# --- environment, labels -------------------------------------------------------------


def _env_value(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise _wrong(path, "a string, a number, a boolean or null", value)


def key_values(value: Any, path: str, *, null_means: str | None = None) -> dict[str, Any]:
    """``[K=V, K]`` or ``{K: V}`` as a mapping; a bare K (or a null) is ``null_means``."""
    out: dict[str, Any] = {}
    if isinstance(value, list):
        for i, item in enumerate(value):
            text = scalar_string(item, f"{path}[{i}]")
            key, sep, rest = text.partition("=")
            if not key:
                raise Invalid(f"{path}[{i}]", f'invalid entry "{text}" (want KEY=VALUE)')
            out[key] = rest if sep else null_means
        return out
    for key, item in mapping(value, path).items():
        if isinstance(item, Reset | Override):
            out[key] = item
            continue
        found = _env_value(item, _join(path, key))
        out[key] = null_means if found is None else found
    return out


def environment(value: Any, path: str) -> dict[str, str | None]:
    return key_values(value, path)


def labels(value: Any, path: str) -> dict[str, str]:
    return key_values(value, path, null_means="")


def extra_hosts(value: Any, path: str) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: scalar_string(v, _join(path, k)) for k, v in mapping(value, path).items()}
    out: dict[str, str] = {}
    for i, item in enumerate(string_list(value, path)):
        match = re.fullmatch(r"([^:=\s]+)[:=](.+)", item)
        if match is None:
            raise Invalid(f"{path}[{i}]", f'invalid extra host "{item}" (want HOST:IP)')
        out[match.group(1)] = match.group(2).strip("[]")
    return out


def env_files(value: Any, path: str) -> list[dict[str, Any]]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _wrong(path, "a string or a list", value)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            out.append({"path": item, "required": True})
        else:
            entry = _fields(item, where, {"path": string, "required": boolean, "format": string})
            if "path" not in entry:
                raise Invalid(where, "path is required")
            out.append({"path": entry["path"], "required": entry.get("required", True)})
    return out


# --- ports ---------------------------------------------------------------------------


def _port_range(text: str, path: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise Invalid(path, f'invalid port "{text}"')
    low, high = int(first), int(last) if sep else int(first)
    if not 0 < low <= high <= 65535:
        raise Invalid(path, f'invalid port range "{text}"')
    return low, high


def _short_port(text: str, path: str) -> list[dict[str, Any]]:
    spec, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp", "sctp"):
        raise Invalid(path, f'invalid protocol "{protocol}" in "{text}"')
    host_ip = None
    if spec.startswith("["):
        ip, sep, rest = spec[1:].partition("]:")
        if not sep:
            raise Invalid(path, f'invalid port "{text}"')
        host_ip, parts = ip, rest.split(":")
        if len(parts) == 1:
            parts = ["", *parts]
    else:
        parts = spec.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        elif len(parts) > 3:
            raise Invalid(path, f'invalid port "{text}"')
    published = parts[0] if len(parts) == 2 else ""
    low, high = _port_range(parts[-1], path)
    out: list[dict[str, Any]] = []
    if published and low != high:
        plow, phigh = _port_range(published, path)
        if phigh - plow != high - low:
            raise Invalid(path, f'port ranges of different lengths in "{text}"')
        pairs = [(str(plow + i), low + i) for i in range(high - low + 1)]
    else:
        if published:
            _port_range(published, path)
        pairs = [(published, port) for port in range(low, high + 1)]
    for pub, target in pairs:
        entry: dict[str, Any] = {"mode": "ingress", "target": target}
        if pub:
            entry["published"] = pub
        if host_ip:
            entry["host_ip"] = host_ip
        entry["protocol"] = protocol
        out.append(entry)
    return out


def ports(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _wrong(path, "a list", value)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if isinstance(item, str):
            out.extend(_short_port(item, where))
            continue
        entry = _fields(
            item,
            where,
            {
                "target": integer,
                "published": scalar_string,
                "host_ip": string,
                "protocol": choice("tcp", "udp", "sctp"),
                "mode": choice("ingress", "host"),
                "name": string,
                "app_protocol": string,
            },
        )
        if "target" not in entry:
            raise Invalid(where, "target is required")
        _port_range(str(entry["target"]), f"{where}.target")
        if "published" in entry:
            _port_range(entry["published"], f"{where}.published")
        out.append({"mode": "ingress", **entry, "protocol": entry.get("protocol", "tcp")})
    return out


def expose(value: Any, path: str) -> list[str]:
    out = string_list(value, path)
    for i, item in enumerate(out):
        spec, _, protocol = item.partition("/")
        _port_range(spec, f"{path}[{i}]")
        if protocol not in ("", "tcp", "udp", "sctp"):
            raise Invalid(f"{path}[{i}]", f'invalid protocol "{protocol}"')
    return out


# --- volumes -------------------------------------------------------------------------


def _short_volume(text: str, path: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) == 1:
        source, target, mode = "", parts[0], ""
    elif len(parts) == 2:
        source, target, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise Invalid(path, f'invalid volume "{text}" (want [SOURCE:]TARGET[:MODE])')
    if not target.startswith("/"):
        raise Invalid(path, f'invalid volume "{text}": the target must be an absolute path')
    is_bind = source.startswith(("/", ".", "~"))
    entry: dict[str, Any] = {"type": "bind" if is_bind else "volume", "target": target}
    if source:
        entry["source"] = source
    options = [o for o in mode.split(",") if o]
    for option in options:
        if option not in ("ro", "rw", "z", "Z", "nocopy", *_PROPAGATIONS):
            raise Invalid(path, f'invalid mode "{option}" in "{text}"')
    if "ro" in options:
        entry["read_only"] = True
    if is_bind:
        bind: dict[str, Any] = {"create_host_path": True}
        propagation = [o for o in options if o in _PROPAGATIONS]
        if propagation:
            bind["propagation"] = propagation[0]
        entry["bind"] = bind
    elif "nocopy" in options:
        entry["volume"] = {"nocopy": True}
    return entry


def volumes(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _wrong(path, "a list", value)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            out.append(_short_volume(item, where))
            continue
        entry = _fields(
            item,
            where,
            {
                "type": choice("volume", "bind", "tmpfs"),
                "source": string,
                "target": string,
                "read_only": boolean,
                "consistency": string,
                "bind": lambda v, p: _fields(
                    v,
                    p,
                    {
                        "propagation": choice(*_PROPAGATIONS),
                        "create_host_path": boolean,
                        "selinux": choice("z", "Z"),
                    },
                ),
                "volume": lambda v, p: _fields(v, p, {"nocopy": boolean, "subpath": string}),
                "tmpfs": lambda v, p: _fields(v, p, {"size": byte_size, "mode": integer}),
            },
        )
        for required in ("type", "target"):
            if required not in entry:
                raise Invalid(where, f"{required} is required")
        if not entry["target"].startswith("/"):
            raise Invalid(f"{where}.target", "must be an absolute path")
        if entry["type"] == "bind" and not entry.get("source"):
            raise Invalid(where, "source is required for a bind mount")
        if entry["type"] == "tmpfs" and entry.get("source"):
            raise Invalid(f"{where}.source", "must not be set for a tmpfs mount")
        out.append(entry)
    return out


# --- networks, depends_on ------------------------------------------------------------


def service_networks(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, list):
        return {name: None for name in string_list(value, path)}
    out: dict[str, Any] = {}
    for name, item in mapping(value, path).items():
        where = _join(path, name)
        if item is None:
            out[name] = None
            continue
        out[name] = _fields(
            item,
            where,
            {
                "aliases": string_list,
                "ipv4_address": string,
                "ipv6_address": string,
                "priority": integer,
                "mac_address": string,
                "gw_priority": integer,
            },
        )
    return out


def depends_on(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, list):
        names = string_list(value, path)
        return {n: {"condition": "service_started", "required": True} for n in names}
    out: dict[str, Any] = {}
    for name, item in mapping(value, path).items():
        where = _join(path, name)
        entry = _fields(
            item if item is not None else {},
            where,
            {"condition": choice(*_CONDITIONS), "required": boolean, "restart": boolean},
        )
        out[name] = {"condition": "service_started", "required": True, **entry}
    return out


# --- build, healthcheck, deploy ------------------------------------------------------


def build(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"context": value}
    entry = _fields(
        value,
        path,
        {
            "context": string,
            "dockerfile": string,
            "dockerfile_inline": string,
            "args": lambda v, p: key_values(v, p),
            "target": string,
            "labels": labels,
            "network": string,
            "no_cache": boolean,
            "pull": boolean,
            "shm_size": byte_size,
            "cache_from": string_list,
            "cache_to": string_list,
            "tags": string_list,
            "extra_hosts": extra_hosts,
            "platforms": string_list,
        },
    )
    return {"context": ".", **entry} if isinstance(entry, dict) else entry


def healthcheck(value: Any, path: str) -> dict[str, Any]:
    entry: dict[str, Any] = _fields(
        value,
        path,
        {
            "test": _health_test,
            "interval": duration,
            "timeout": duration,
            "start_period": duration,
            "start_interval": duration,
            "retries": non_negative,
            "disable": boolean,
        },
    )
    return entry


def _health_test(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        return ["CMD-SHELL", value]
    test = string_list(value, path)
    if not test or test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise Invalid(path, "must start with NONE, CMD or CMD-SHELL")
    return test


def _resources(value: Any, path: str) -> Any:
    return _fields(
        value,
        path,
        {
            "cpus": number,
            "memory": byte_size,
            "pids": integer,
            "devices": lambda v, p: v,
            "generic_resources": lambda v, p: v,
        },
    )


def deploy(value: Any, path: str) -> dict[str, Any]:
    ignored = lambda v, p: v  # noqa: E731 - swarm's settings: accepted, unused on one engine
    entry: dict[str, Any] = _fields(
        value,
        path,
        {
            "mode": choice("replicated", "global"),
            "replicas": non_negative,
            "labels": labels,
            "resources": lambda v, p: _fields(
                v, p, {"limits": _resources, "reservations": _resources}
            ),
            "restart_policy": lambda v, p: _fields(
                v,
                p,
                {
                    "condition": choice("none", "on-failure", "any"),
                    "delay": duration,
                    "max_attempts": non_negative,
                    "window": duration,
                },
            ),
            "placement": ignored,
            "update_config": ignored,
            "rollback_config": ignored,
            "endpoint_mode": ignored,
        },
    )
    return entry


def restart(value: Any, path: str) -> str:
    if value is False:  # `restart: no` unquoted, where a YAML 1.1 reader sees a boolean
        return "no"
    text = string(value, path)
    if not _RESTART.fullmatch(text):
        raise Invalid(
            path, f'invalid restart policy "{text}" (no, always, on-failure[:N], unless-stopped)'
        )
    return text


def ulimits(value: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, item in mapping(value, path).items():
        where = _join(path, name)
        if isinstance(item, int) and not isinstance(item, bool):
            out[name] = {"soft": item, "hard": item}
        else:
            entry = _fields(item, where, {"soft": integer, "hard": integer})
            if "soft" not in entry or "hard" not in entry:
                raise Invalid(where, "soft and hard are required")
            out[name] = entry
    return out


def logging(value: Any, path: str) -> dict[str, Any]:
    entry: dict[str, Any] = _fields(
        value, path, {"driver": string, "options": lambda v, p: labels(v, p)}
    )
    return entry


SERVICE_KEYS: dict[str, Check] = {
    "image": string,
    "build": build,
    "command": command,
    "entrypoint": command,
    "environment": environment,
    "env_file": env_files,
    "ports": ports,
    "expose": expose,
    "volumes": volumes,
    "tmpfs": string_or_list,
    "networks": service_networks,
    "network_mode": string,
    "depends_on": depends_on,
    "healthcheck": healthcheck,
    "restart": restart,
    "user": scalar_string,
    "working_dir": string,
    "read_only": boolean,
    "init": boolean,
    "hostname": string,
    "domainname": string,
    "labels": labels,
    "deploy": deploy,
    "scale": non_negative,
    "stop_grace_period": duration,
    "stop_signal": string,
    "profiles": string_list,
    "container_name": string,
    "tty": boolean,
    "stdin_open": boolean,
    "privileged": boolean,
    "cap_add": string_list,
    "cap_drop": string_list,
    "security_opt": string_list,
    "extra_hosts": extra_hosts,
    "dns": string_or_list,
    "dns_search": string_or_list,
    "dns_opt": string_list,
    "pull_policy": choice("always", "never", "missing", "if_not_present", "build"),
    "shm_size": byte_size,
    "sysctls": labels,
    "ulimits": ulimits,
    "logging": logging,
    "mem_limit": byte_size,
    "memswap_limit": byte_size,
    "mem_reservation": byte_size,
    "cpus": number,
    "cpu_shares": integer,
    "pids_limit": integer,
    "oom_score_adj": integer,
    "platform": string,
}
# Keys of the Compose Specification that this implementation does not do: named in
# the error so that the user knows it is a limit here, not a typo.
UNSUPPORTED_SERVICE_KEYS = frozenset(
    {
        "annotations",
        "attach",
        "blkio_config",
        "cgroup",
        "cgroup_parent",
        "configs",
        "cpu_count",
        "cpu_percent",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "cpuset",
        "credential_spec",
        "develop",
        "device_cgroup_rules",
        "devices",
        "extends",
        "external_links",
        "gpus",
        "group_add",
        "ipc",
        "isolation",
        "label_file",
        "links",
        "mac_address",
        "mem_swappiness",
        "models",
        "oom_kill_disable",
        "pid",
        "post_start",
        "pre_stop",
        "provider",
        "runtime",
        "secrets",
        "storage_opt",
        "use_api_socket",
        "userns_mode",
        "uts",
        "volumes_from",
    }
)


def service(value: Any, path: str) -> Any:
    if value is None:
        return {}
    if isinstance(value, Reset | Override):
        return _apply(service, value, path)
    for key in mapping(value, path):
        if key in UNSUPPORTED_SERVICE_KEYS:
            raise Invalid(_join(path, key), "not supported by moor compose")
    return _fields(value, path, SERVICE_KEYS)


def _external(value: Any, path: str) -> Any:
    if isinstance(value, dict):  # the legacy form, external: {name: NAME}
        return _fields(value, path, {"name": string})
    return boolean(value, path)


def network(value: Any, path: str) -> Any:
    if value is None:
        return {}
    return _fields(
        value,
        path,
        {
            "name": string,
            "external": _external,
            "driver": string,
            "driver_opts": labels,
            "labels": labels,
            "internal": boolean,
            "attachable": boolean,
            "enable_ipv6": boolean,
            "enable_ipv4": boolean,
            "ipam": lambda v, p: mapping(v, p),
        },
    )


def volume(value: Any, path: str) -> Any:
    if value is None:
        return {}
    return _fields(
        value,
        path,
        {
            "name": string,
            "external": _external,
            "driver": string,
            "driver_opts": labels,
            "labels": labels,
        },
    )


TOP_KEYS: dict[str, Check] = {
    "version": lambda v, p: v,  # legacy: accepted and ignored
    "name": string,
    "services": lambda v, p: _named(v, p, service),
    "networks": lambda v, p: _named(v, p, network),
    "volumes": lambda v, p: _named(v, p, volume),
}


def _named(value: Any, path: str, item: Check) -> dict[str, Any]:
    if value is None:
        return {}
    out = _keyed(value, path, item)
    if path == "services":
        for name in out:
            if not SERVICE_NAME.fullmatch(name):
                raise Invalid(
                    _join(path, name), "invalid service name (letters, digits, '.', '_', '-')"
                )
    return out


def normalize_file(tree: Any) -> dict[str, Any]:
    """One file's tree in canonical form (see the module doc); :class:`Invalid` if not."""
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise Invalid("", f"the top level must be a mapping, not {_type_name(tree)}")
    for key in ("secrets", "configs", "include", "models"):
        if key in tree:
            raise Invalid(key, "not supported by moor compose")
    normalized: dict[str, Any] = _fields(tree, "", TOP_KEYS)
    normalized.pop("version", None)
    return normalized
