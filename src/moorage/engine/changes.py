"""``--change`` instructions (``import``, ``commit``): Dockerfile lines applied to a config.

Supported as Docker supports them there: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR. JSON form (``CMD ["sh"]``) is
taken as is; shell form becomes ``["/bin/sh", "-c", "..."]``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from moorage.errors import InvalidArgument
from moorage.oci.image import ContainerConfig


def _json_or_shell(value: str, where: str) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise InvalidArgument(f"{where}: invalid JSON array: {value}") from exc
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise InvalidArgument(f"{where}: want a JSON array of strings: {value}")
        return tuple(parsed)
    return ("/bin/sh", "-c", value)


def _pairs(value: str, where: str) -> list[tuple[str, str]]:
    words = shlex.split(value)
    if len(words) == 2 and "=" not in words[0]:
        return [(words[0], words[1])]  # the legacy "ENV key value" form
    out = []
    for word in words:
        key, sep, val = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{where}: want key=value: {word}")
        out.append((key, val))
    return out


def apply_changes(config: ContainerConfig, changes: Sequence[str]) -> ContainerConfig:
    for change in changes:
        instruction, _, value = change.strip().partition(" ")
        verb = instruction.upper()
        where = f"change {change!r}"
        if not value.strip():
            raise InvalidArgument(f"{where}: {verb} needs an argument")
        if verb == "CMD":
            config = config._replace(cmd=_json_or_shell(value, where))
        elif verb == "ENTRYPOINT":
            config = config._replace(entrypoint=_json_or_shell(value, where))
        elif verb == "ENV":
            env = {e.split("=", 1)[0]: e for e in config.env}
            for key, val in _pairs(value, where):
                env[key] = f"{key}={val}"
            config = config._replace(env=tuple(env.values()))
        elif verb == "LABEL":
            labels = dict(config.labels)
            labels.update(_pairs(value, where))
            config = config._replace(labels=labels)
        elif verb == "EXPOSE":
            ports = list(config.exposed_ports)
            for port in value.split():
                spec = port if "/" in port else f"{port}/tcp"
                if spec not in ports:
                    ports.append(spec)
            config = config._replace(exposed_ports=tuple(ports))
        elif verb == "VOLUME":
            volumes = list(config.volumes)
            paths = (
                list(_json_or_shell(value, where))
                if value.strip().startswith("[")
                else (value.split())
            )
            volumes += [v for v in paths if v not in volumes]
            config = config._replace(volumes=tuple(volumes))
        elif verb == "USER":
            config = config._replace(user=value.strip())
        elif verb == "WORKDIR":
            config = config._replace(working_dir=value.strip())
        elif verb == "STOPSIGNAL":
            config = config._replace(stop_signal=value.strip())
        elif verb == "ONBUILD":
            config = config._replace(on_build=(*config.on_build, value.strip()))
        else:
            raise InvalidArgument(f"{where}: {verb} is not supported in a change")
    return config
