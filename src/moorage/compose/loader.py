"""Loading a compose project: files, environment, interpolation, merge, resolution.

:func:`load_project` does what docker compose does before it talks to an engine:

1. the files: ``-f`` (in order), else ``COMPOSE_FILE`` (separated by ``:``), else
   ``compose.yaml`` (or ``compose.yml``, ``docker-compose.yaml``,
   ``docker-compose.yml``) in the working directory or the nearest parent that has
   one, with its ``.override`` file next to it when there is one;
2. the project directory: ``--project-directory``, else the first file's directory;
   relative paths in every file are relative to it, as the specification says;
3. the environment for interpolation: ``--env-file`` files (default: the project
   directory's ``.env``), overridden by the process environment;
4. each file read as YAML (anchors, merge keys, ``!reset``/``!override``; YAML 1.2
   scalars, so ``no`` is a string and ``80:80`` no number), interpolated, checked
   and made canonical (:mod:`moorage.compose.schema`);
5. the files merged (:mod:`moorage.compose.merge`), then resolved into a
   :class:`~moorage.compose.model.Project`: paths made absolute, ``env_file`` read,
   names settled, references and cycles checked, profiles applied.

The project name: ``-p``, else ``COMPOSE_PROJECT_NAME``, else the top-level
``name:``, else the project directory's name made lower-case with only letters,
digits, ``-`` and ``_`` kept. Every error names the file and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from moorage.compose import envfile, schema
from moorage.compose.interpolate import InterpolationError, interpolate_tree
from moorage.compose.merge import merge, strip_tags
from moorage.compose.model import (
    ComposeFileError,
    Network,
    Project,
    Service,
    Volume,
    build_service,
    find_cycle,
    resolve_path,
)
from moorage.errors import InvalidArgument, NotFound

__all__ = ["DEFAULT_FILES", "ProjectOptions", "load_project", "normalize_project_name"]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class ProjectOptions:
    files: Sequence[str] = ()
    project_name: str | None = None
    project_directory: str | None = None
    profiles: Sequence[str] = ()
    env_files: Sequence[str] = ()
    environ: Mapping[str, str] | None = None  # None: os.environ
    cwd: str | None = None  # None: the current directory
    services: Sequence[str] = field(default_factory=tuple)  # named: their profiles are on


def normalize_project_name(name: str) -> str:
    """A directory name as a project name: lower-case, ``[a-z0-9_-]`` kept, no
    leading ``_`` or ``-`` (docker compose's rule)."""
    kept = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return kept.lstrip("_-")


# --- YAML ----------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML as compose-go reads it: YAML 1.2's core scalars, no duplicate keys."""

    yaml_implicit_resolvers = {
        first: [
            r
            for r in resolvers
            if r[0]
            not in (
                "tag:yaml.org,2002:bool",
                "tag:yaml.org,2002:int",
                "tag:yaml.org,2002:float",
                "tag:yaml.org,2002:timestamp",
            )
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
                if isinstance(key, str | int | float | bool) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"mapping key {key!r} already defined", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


_Loader.add_implicit_resolver(  # type: ignore[no-untyped-call]
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(  # type: ignore[no-untyped-call]
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(  # type: ignore[no-untyped-call]
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _int(loader: _Loader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text, 10)


def _float(loader: _Loader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node)).lower()  # type: ignore[arg-type]
    if text.endswith("inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    return float(text)


def _reset(loader: _Loader, node: yaml.Node) -> schema.Reset:
    return schema.Reset()


def _override(loader: _Loader, node: yaml.Node) -> schema.Override:
    if isinstance(node, yaml.MappingNode):
        return schema.Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return schema.Override(loader.construct_sequence(node, deep=True))
    return schema.Override(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("tag:yaml.org,2002:float", _float)
_Loader.add_constructor("!reset", _reset)
_Loader.add_constructor("!override", _override)


def parse_yaml(text: str, filename: str) -> Any:
    """One YAML document; a :class:`ComposeFileError` with line and column if invalid."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        problem = exc.problem or exc.context or "invalid YAML"
        raise ComposeFileError(where, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ComposeFileError(filename, "", f"invalid YAML: {exc}") from None


# --- files and environment -----------------------------------------------------------


def find_files(cwd: str) -> list[str]:
    """The default compose file (and its override) in ``cwd`` or its nearest parent."""
    directory = os.path.abspath(cwd)
    while True:
        for name in DEFAULT_FILES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                stem, ext = os.path.splitext(name)
                override = os.path.join(directory, f"{stem}.override{ext}")
                return [path, override] if os.path.isfile(override) else [path]
        parent = os.path.dirname(directory)
        if parent == directory:
            raise NotFound(
                f"no configuration file provided: not found (looked for "
                f"{', '.join(DEFAULT_FILES)} in {os.path.abspath(cwd)} and its parents)"
            )
        directory = parent


def _read_env_files(
    paths: Sequence[str], environ: Mapping[str, str], explicit: bool
) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            if explicit:
                raise NotFound(f"env file {path} not found")
            continue
        out.update(envfile.parse_env_file(path, envfile.as_lookup(environ, out)))
    return out


def load_project(options: ProjectOptions) -> Project:
    """The project that the options and files describe (see the module doc)."""
    environ = dict(os.environ if options.environ is None else options.environ)
    cwd = os.path.abspath(options.cwd or os.getcwd())
    # .env of the working directory may set COMPOSE_FILE and friends.
    cwd_env = (
        {} if options.env_files else _read_env_files([os.path.join(cwd, ".env")], environ, False)
    )
    early = {**cwd_env, **environ}
    files = [os.path.join(cwd, f) for f in options.files]
    if not files and early.get("COMPOSE_FILE"):
        files = [os.path.join(cwd, f) for f in early["COMPOSE_FILE"].split(os.pathsep) if f]
    if not files:
        files = find_files(cwd)
    project_dir = os.path.abspath(
        os.path.join(cwd, options.project_directory)
        if options.project_directory
        else os.path.dirname(files[0])
    )
    env_paths = [os.path.join(cwd, f) for f in options.env_files] or [
        os.path.join(project_dir, ".env")
    ]
    dotenv = _read_env_files(env_paths, environ, bool(options.env_files))
    project_env = {**dotenv, **environ}
    lookup = envfile.as_lookup(project_env)
    warnings: list[str] = []
    missing: set[str] = set()

    def on_missing(name: str) -> None:
        if name not in missing:
            missing.add(name)
            warnings.append(f'the "{name}" variable is not set: defaulting to a blank string')

    merged: dict[str, Any] = {}
    origin: dict[tuple[str, str], str] = {}  # (service, key) -> the file that set it last
    for index, path in enumerate(files):
        shown = os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise NotFound(f"{shown}: no such file") from None
        except OSError as exc:
            raise InvalidArgument(f"{shown}: cannot read: {exc.strerror}") from None
        tree = parse_yaml(text, shown)
        try:
            tree = interpolate_tree(tree, lookup, on_missing)
        except InterpolationError as exc:
            raise ComposeFileError(shown, exc.path, exc.detail) from None
        try:
            normalized = schema.normalize_file(tree)
        except schema.Invalid as exc:
            raise ComposeFileError(shown, exc.path, exc.message) from None
        for name, service in (normalized.get("services") or {}).items():
            origin.setdefault((name, ""), shown)
            if isinstance(service, dict):
                for key in service:
                    origin[(name, key)] = shown
        merged = strip_tags(normalized) if index == 0 else merge(merged, normalized)
        if index == 0:
            origin[("", "")] = shown
    merged = strip_tags(merged)
    name = (
        options.project_name
        or environ.get("COMPOSE_PROJECT_NAME")
        or dotenv.get("COMPOSE_PROJECT_NAME")
    )
    if name:
        if not _PROJECT_NAME.fullmatch(name):
            raise InvalidArgument(
                f'invalid project name "{name}": it must contain only lower-case letters, '
                "digits, '-' and '_', and start with a letter or a digit"
            )
    elif merged.get("name"):
        name = str(merged["name"])
        if not _PROJECT_NAME.fullmatch(name):
            raise ComposeFileError(origin[("", "")], "name", f'invalid project name "{name}"')
    else:
        name = normalize_project_name(os.path.basename(project_dir))
        if not name:
            raise InvalidArgument(
                f"cannot make a project name of the directory {project_dir!r}: use -p NAME"
            )
    profiles = set(options.profiles)
    if not profiles and project_env.get("COMPOSE_PROFILES"):
        profiles = {p.strip() for p in project_env["COMPOSE_PROFILES"].split(",") if p.strip()}
    resolver = _Resolver(name, project_dir, project_env, origin, merged)
    project = resolver.project(files, warnings)
    return apply_profiles(project, profiles, options.services)


def apply_profiles(project: Project, active: set[str], named: Sequence[str] = ()) -> Project:
    """The project with only the services its active profiles (and the services named
    on the command line, with their dependencies) enable; the rest in ``disabled``."""
    every = {**project.services, **project.disabled}
    enabled = {
        n for n, s in every.items() if not s.profiles or set(s.profiles) & active or n in named
    }
    stack = [n for n in named if n in every]
    while stack:
        for dep in every[stack.pop()].depends_on:
            if dep in every and dep not in enabled:
                enabled.add(dep)
                stack.append(dep)
    for name in sorted(enabled):
        for dep, spec in every[name].depends_on.items():
            if dep not in enabled and spec.required:
                raise InvalidArgument(
                    f'service "{name}" depends on service "{dep}", which is disabled by its '
                    f"profiles ({', '.join(every[dep].profiles)})"
                )
    return Project(
        name=project.name,
        working_dir=project.working_dir,
        config_files=project.config_files,
        services={n: s for n, s in every.items() if n in enabled},
        networks=project.networks,
        volumes=project.volumes,
        disabled={n: s for n, s in every.items() if n not in enabled},
        warnings=project.warnings,
    )


class _Resolver:
    """The merged tree made into a checked :class:`Project`."""

    def __init__(
        self,
        name: str,
        project_dir: str,
        environment: Mapping[str, str],
        origin: Mapping[tuple[str, str], str],
        tree: dict[str, Any],
    ) -> None:
        self.name = name
        self.dir = project_dir
        self.environment = environment
        self.origin = origin
        self.tree = tree

    def error(self, service: str, key: str, message: str, sub: str = "") -> ComposeFileError:
        file = self.origin.get((service, key)) or self.origin.get((service, "")) or ""
        path = f"services.{service}" + (f".{key}" if key else "") + sub
        return ComposeFileError(file or self.origin.get(("", ""), "compose file"), path, message)

    def project(self, files: Sequence[str], warnings: list[str]) -> Project:
        services_tree: dict[str, Any] = self.tree.get("services") or {}
        if not services_tree:
            raise ComposeFileError(self.origin.get(("", ""), ""), "services", "no service defined")
        networks = self._networks(services_tree)
        volumes = self._volumes()
        graph = {n: list((s.get("depends_on") or {}).keys()) for n, s in services_tree.items()}
        cycle = find_cycle(graph)
        if cycle is not None:
            raise self.error(cycle[0], "depends_on", f"dependency cycle: {' -> '.join(cycle)}")
        services: dict[str, Service] = {}
        for svc_name, config in services_tree.items():
            services[svc_name] = self._service(svc_name, dict(config), networks, volumes)
        return Project(
            name=self.name,
            working_dir=self.dir,
            config_files=tuple(files),
            services=services,
            networks=networks,
            volumes=volumes,
            warnings=tuple(warnings),
        )

    def _networks(self, services: Mapping[str, Any]) -> dict[str, Network]:
        declared: dict[str, Any] = dict(self.tree.get("networks") or {})
        uses_default = any(
            not s.get("networks") and not s.get("network_mode") for s in services.values()
        ) or any("default" in (s.get("networks") or {}) for s in services.values())
        if uses_default:
            declared.setdefault("default", {})
        out: dict[str, Network] = {}
        for key, spec in declared.items():
            spec = spec or {}
            external = spec.get("external", False)
            if isinstance(external, dict):
                spec = {**spec, "name": external.get("name", spec.get("name"))}
                external = True
            name = spec.get("name") or (key if external else f"{self.name}_{key}")
            out[key] = Network(
                key=key,
                name=name,
                external=bool(external),
                driver=spec.get("driver"),
                driver_opts=dict(spec.get("driver_opts") or {}),
                labels=dict(spec.get("labels") or {}),
                internal=bool(spec.get("internal")),
                attachable=bool(spec.get("attachable")),
                enable_ipv6=bool(spec.get("enable_ipv6")),
                ipam=spec.get("ipam"),
            )
        return out

    def _volumes(self) -> dict[str, Volume]:
        out: dict[str, Volume] = {}
        for key, spec in (self.tree.get("volumes") or {}).items():
            spec = spec or {}
            external = spec.get("external", False)
            if isinstance(external, dict):
                spec = {**spec, "name": external.get("name", spec.get("name"))}
                external = True
            out[key] = Volume(
                key=key,
                name=spec.get("name") or (key if external else f"{self.name}_{key}"),
                external=bool(external),
                driver=spec.get("driver"),
                driver_opts=dict(spec.get("driver_opts") or {}),
                labels=dict(spec.get("labels") or {}),
            )
        return out

    def _service(
        self,
        name: str,
        config: dict[str, Any],
        networks: Mapping[str, Network],
        volumes: Mapping[str, Volume],
    ) -> Service:
        build = config.get("build")
        if build is not None:
            context = build.get("context", ".")
            if re.match(r"^(https?|git)://|^git@", context):
                raise self.error(
                    name, "build", "remote build contexts are not supported", ".context"
                )
            config["build"] = {**build, "context": resolve_path(context, self.dir)}
        if "image" not in config and build is None:
            raise self.error(name, "", "has neither an image nor a build context: one is needed")
        image = config.get("image") or f"{self.name}-{name}"
        for i, mount in enumerate(config.get("volumes") or ()):
            if mount["type"] == "bind":
                mount["source"] = resolve_path(mount["source"], self.dir)
            elif (
                mount["type"] == "volume" and mount.get("source") and mount["source"] not in volumes
            ):
                raise self.error(
                    name,
                    "volumes",
                    f'named volume "{mount["source"]}" is not declared in the top-level volumes',
                    f"[{i}]",
                )
        self._environment(name, config)
        mode = config.get("network_mode")
        if mode is not None:
            if config.get("networks"):
                raise self.error(name, "network_mode", "cannot be set together with networks")
            if mode.startswith("service:") and mode[8:] not in (self.tree.get("services") or {}):
                raise self.error(name, "network_mode", f'undefined service "{mode[8:]}"')
        else:
            config["networks"] = config.get("networks") or {"default": None}
        for key in config.get("networks") or {}:
            if key not in networks:
                raise self.error(
                    name,
                    "networks",
                    f'network "{key}" is not declared in the top-level networks',
                    f".{key}",
                )
        services = self.tree.get("services") or {}
        for dep, spec in (config.get("depends_on") or {}).items():
            if dep not in services and spec.get("required", True):
                raise self.error(name, "depends_on", f'undefined service "{dep}"', f".{dep}")
            if dep == name:
                raise self.error(name, "depends_on", "a service cannot depend on itself")
        replicas = (config.get("deploy") or {}).get("replicas", config.get("scale", 1))
        if config.get("container_name") and replicas > 1:
            raise self.error(
                name, "container_name", f"cannot be set for {replicas} replicas: names are unique"
            )
        return build_service(name, config, image, networks, volumes)

    def _environment(self, name: str, config: dict[str, Any]) -> None:
        """``env_file`` read, then ``environment`` over it; bare keys from the project's
        environment (left out when it does not have them)."""
        merged: dict[str, str] = {}
        for i, entry in enumerate(config.pop("env_file", None) or ()):
            path = resolve_path(entry["path"], self.dir)
            if not os.path.isfile(path):
                if entry.get("required", True):
                    raise self.error(name, "env_file", f"env file {path} not found", f"[{i}]")
                continue
            try:
                merged.update(envfile.parse_env_file(path, envfile.as_lookup(self.environment)))
            except InvalidArgument as exc:
                raise self.error(name, "env_file", str(exc), f"[{i}]") from None
        for key, value in (config.get("environment") or {}).items():
            if value is None:
                found = self.environment.get(key)
                if found is None:
                    merged.pop(key, None)
                    continue
                value = found
            merged[key] = value
        if merged:
            config["environment"] = merged
        else:
            config.pop("environment", None)
