"""From a ``POST /containers/create`` body to what the engine records.

Docker's rules for what the user's request keeps from the image (Env merged by
key, a new Entrypoint drops the image's Cmd, ...), the checks that only the
engine can make (restart policy, log driver, health check), and names.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from moorage.engine.specgen import ContainerRequest
from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.oci.image import ContainerConfig, Healthcheck

INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/bin/tini")


def restart_policy(host_config: dict[str, Any]) -> dict[str, Any]:
    policy = host_config.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise InvalidArgument("HostConfig.RestartPolicy: must be an object")
    name = policy.get("Name") or "no"
    count = policy.get("MaximumRetryCount") or 0
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of "
            "'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    if not isinstance(count, int) or count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        )
    return {"Name": name, "MaximumRetryCount": count}


def check_log_config(config: Any) -> None:
    if not config:
        return
    if not isinstance(config, dict):
        raise InvalidArgument("HostConfig.LogConfig: must be an object")
    driver = config.get("Type") or "json-file"
    if driver not in ("json-file", "local"):
        raise InvalidArgument(f'logging driver "{driver}" is not supported (use json-file)')
    from moorage.engine.logs import parse_log_opts

    parse_log_opts(dict(config.get("Config") or {}))


def healthcheck(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument("Healthcheck: must be an object")
    test = value.get("Test")
    if test is not None and (
        not isinstance(test, list) or not all(isinstance(t, str) for t in test)
    ):
        raise InvalidArgument("Healthcheck.Test: must be an array of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(f"Healthcheck.Test: unknown kind {test[0]!r}")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = value.get(key)
        if v is not None and (not isinstance(v, int) or (v != 0 and v < 1_000_000)):
            raise InvalidArgument(f"Healthcheck.{key}: must be 0 or at least 1ms (in ns)")
    retries = value.get("Retries")
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise InvalidArgument("Healthcheck.Retries: must be a non-negative integer")
    return dict(value)


def image_config_json(cfg: ContainerConfig) -> dict[str, Any]:
    out = cfg._asdict()
    out["labels"] = dict(cfg.labels)
    out["healthcheck"] = cfg.healthcheck._asdict() if cfg.healthcheck else None
    return out


def image_config_from_json(data: Any) -> ContainerConfig:
    if not isinstance(data, dict):
        return ContainerConfig()
    data = dict(data)
    hc = data.get("healthcheck")
    data["healthcheck"] = Healthcheck(**{**hc, "test": tuple(hc["test"])}) if hc else None
    for key in ("exposed_ports", "env", "volumes", "on_build", "shell"):
        data[key] = tuple(data.get(key) or ())
    for key in ("entrypoint", "cmd"):
        if data.get(key) is not None:
            data[key] = tuple(data[key])
    return ContainerConfig(**data)


def merged_config(
    body: dict[str, Any],
    request: ContainerRequest,
    image: ContainerConfig,
    cid: str,
    health: dict[str, Any] | None,
) -> dict[str, Any]:
    """Docker's ``Config`` as inspect shows it: the request over the image's defaults."""
    env = list(image.env)
    keys = {e.partition("=")[0]: i for i, e in enumerate(env)}
    for item in request.env:
        k = item.partition("=")[0]
        if k in keys:
            env[keys[k]] = item
        else:
            keys[k] = len(env)
            env.append(item)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    entrypoint = request.entrypoint if request.entrypoint is not None else image.entrypoint
    if request.entrypoint is not None and request.cmd is None:
        cmd: tuple[str, ...] | None = None  # a new entrypoint drops the image's Cmd
    else:
        cmd = request.cmd if request.cmd is not None else image.cmd
    if entrypoint == ("",):
        entrypoint = None
    image_health = image.healthcheck._asdict() if image.healthcheck else None
    healthcheck = health if health is not None else docker_health(image_health)
    exposed = {p: {} for p in image.exposed_ports} | dict(request.exposed_ports)
    volumes: dict[str, Any] = {v: {} for v in image.volumes} | dict(body.get("Volumes") or {})
    config: dict[str, Any] = {
        "Hostname": request.hostname or cid[:12],
        "Domainname": body.get("Domainname") or "",
        "User": request.user or image.user or "",
        "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout")),
        "AttachStderr": bool(body.get("AttachStderr")),
        "Tty": request.tty,
        "OpenStdin": request.open_stdin,
        "StdinOnce": bool(body.get("StdinOnce")),
        "Env": env,
        "Cmd": list(cmd) if cmd is not None else None,
        "Image": request.image,
        "Volumes": volumes or None,
        "WorkingDir": request.working_dir or image.working_dir or "",
        "Entrypoint": list(entrypoint) if entrypoint is not None else None,
        "OnBuild": None,
        "Labels": dict(image.labels) | dict(request.labels),
    }
    if exposed:
        config["ExposedPorts"] = exposed
    if healthcheck:
        config["Healthcheck"] = healthcheck
    stop_signal = request.stop_signal or image.stop_signal
    if stop_signal:
        config["StopSignal"] = stop_signal
    if body.get("StopTimeout") is not None:
        timeout = body["StopTimeout"]
        if not isinstance(timeout, int):
            raise InvalidArgument("StopTimeout: must be an integer")
        config["StopTimeout"] = timeout
    return config


def docker_health(hc: dict[str, Any] | None) -> dict[str, Any] | None:
    if not hc or not hc.get("test"):
        return None
    return {
        "Test": list(hc["test"]),
        "Interval": hc.get("interval", 0),
        "Timeout": hc.get("timeout", 0),
        "StartPeriod": hc.get("start_period", 0),
        "StartInterval": hc.get("start_interval", 0),
        "Retries": hc.get("retries", 0),
    }


def normalised_host_config(host: dict[str, Any], restart: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(host)
    out["RestartPolicy"] = restart
    out.setdefault("NetworkMode", "bridge")
    out.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    if not out["LogConfig"].get("Type"):
        out["LogConfig"]["Type"] = "json-file"
    out["LogConfig"].setdefault("Config", {})
    return out


def init_binary() -> str:
    for path in INIT_CANDIDATES:
        if os.path.exists(path):
            return path
    raise FailedPrecondition(
        "--init: no init binary found (install tini: " + ", ".join(INIT_CANDIDATES) + ")"
    )


_ADJECTIVES = [
    "admiring",
    "adoring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "bold",
    "brave",
    "busy",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "loving",
    "modest",
    "nifty",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "vibrant",
    "wizardly",
    "zealous",
]
_NAMES = [
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "bell",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "knuth",
    "lamport",
    "lovelace",
    "mccarthy",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
]


def random_name() -> str:
    import random

    return f"{random.choice(_ADJECTIVES)}_{random.choice(_NAMES)}"
