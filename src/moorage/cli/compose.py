"""``moor compose``: a project of services from compose files, as docker compose runs it.

The project is loaded (:mod:`moorage.compose.loader`) when a command runs, then the
command drives the engine through :class:`~moorage.compose.runner.Runner`. Progress
lines (``Container shop-web-1  Started``) go to stderr, output to stdout. ``up``
without ``-d`` follows the containers' output, one colour per service on a terminal,
and a Ctrl-C stops the project gracefully (a second one kills it).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from moorage.cli.connect import client
from moorage.errors import InvalidArgument, MoorageError, NotFound

if TYPE_CHECKING:
    from moorage.api.client import Client
    from moorage.compose.logs import LogLine, LogSource
    from moorage.compose.model import Project
    from moorage.compose.planner import Observed
    from moorage.compose.runner import Runner

_COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)


class _State:
    def __init__(self, host: str | None, options: dict[str, Any]) -> None:
        self.host = host
        self.options = options
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = client(self.host)
        return self._client

    def project(self, services: Sequence[str] = ()) -> Project:
        from moorage.compose.loader import ProjectOptions, load_project

        project = load_project(ProjectOptions(services=tuple(services), **self.options))
        for warning in project.warnings:
            click.echo(f"WARN: {warning}", err=True)
        for name in services:
            project.service(name)  # a name the project does not have: an error now
        return project

    def runner(self, project: Project) -> Runner:
        from moorage.compose.runner import Runner

        return Runner(self.client(), project, progress=_progress, output=_build_output)


def _progress(line: str) -> None:
    click.echo(f" {line}", err=True)


def _build_output(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _state(ctx: click.Context) -> _State:
    state = ctx.find_object(_State)
    assert state is not None
    return state


def _names(services: Sequence[str]) -> list[str] | None:
    return list(services) or None


@click.group("compose")
@click.option("-f", "--file", "files", multiple=True, help="compose file (repeatable)")
@click.option("-p", "--project-name", default=None, help="project name")
@click.option("--profile", "profiles", multiple=True, help="enable a profile (repeatable)")
@click.option("--env-file", "env_files", multiple=True, help="an alternate environment file")
@click.option("--project-directory", default=None, help="the project's working directory")
@click.pass_context
def compose(
    ctx: click.Context,
    files: tuple[str, ...],
    project_name: str | None,
    profiles: tuple[str, ...],
    env_files: tuple[str, ...],
    project_directory: str | None,
) -> None:
    """Define and run multi-container applications."""
    host = ctx.obj.get("host") if ctx.obj else None
    ctx.obj = _State(
        host,
        {
            "files": files,
            "project_name": project_name,
            "profiles": profiles,
            "env_files": env_files,
            "project_directory": project_directory,
        },
    )


def _scale(values: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not count.isdigit():
            raise InvalidArgument(f"invalid --scale {value!r}: want SERVICE=NUMBER")
        out[name] = int(count)
    return out


@compose.command("up")
@click.option("-d", "--detach", is_flag=True, help="run in the background")
@click.option("--build", "build", is_flag=True, help="build images before starting")
@click.option("--force-recreate", is_flag=True, help="recreate containers even if unchanged")
@click.option("--no-recreate", is_flag=True, help="keep existing containers even if changed")
@click.option("--no-deps", is_flag=True, help="do not start the services' dependencies")
@click.option("--no-start", is_flag=True, help="create the containers, do not start them")
@click.option("--scale", "scale_values", multiple=True, help="SERVICE=NUMBER (repeatable)")
@click.option("--wait", is_flag=True, help="wait for the services to be running|healthy")
@click.option("--remove-orphans", is_flag=True, help="remove containers of removed services")
@click.option("-t", "--timeout", type=int, default=None, help="stop timeout (seconds)")
@click.option("--no-color", is_flag=True, help="monochrome output")
@click.argument("services", nargs=-1)
@click.pass_context
def up_cmd(
    ctx: click.Context,
    detach: bool,
    build: bool,
    force_recreate: bool,
    no_recreate: bool,
    no_deps: bool,
    no_start: bool,
    scale_values: tuple[str, ...],
    wait: bool,
    remove_orphans: bool,
    timeout: int | None,
    no_color: bool,
    services: tuple[str, ...],
) -> None:
    """Create and start the containers."""
    if force_recreate and no_recreate:
        raise InvalidArgument("--force-recreate and --no-recreate are incompatible")
    state = _state(ctx)
    project = state.project(services)
    scale = _scale(scale_values)
    for name in scale:
        project.service(name)
    runner = state.runner(project)
    began = time.time()  # what containers say from now on is shown by an attached up
    runner.up(
        _names(services),
        no_deps=no_deps,
        scale=scale,
        force_recreate=force_recreate,
        no_recreate=no_recreate,
        build=build,
        remove_orphans=remove_orphans,
        start=not no_start,
    )
    names = project.order(_names(services), with_deps=not no_deps)
    if wait and not no_start:
        runner.wait_up(names)
    if detach or no_start:
        return
    _attached(runner, names, timeout, began, colour=not no_color and sys.stdout.isatty())


def _attached(
    runner: Runner, names: list[str], timeout: int | None, since: float, colour: bool
) -> None:
    """Follow the output until every container stops; Ctrl-C stops them gracefully."""
    from moorage.compose.logs import stream_logs

    sources = _sources(runner, runner.containers(names))
    click.echo(f"Attaching to {', '.join(s.name for s in sources)}")
    printer = _Printer(sources, runner.project, colour=colour, prefix=True, timestamps=False)
    try:
        lines = stream_logs(runner.client, sources, follow=True, since=f"{since:.6f}")
        for line in lines:
            printer.print(line)
            if line.end:
                _print_exit(runner, line.source)
    except KeyboardInterrupt:
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        try:
            runner.stop(names, timeout)
        except KeyboardInterrupt:
            for c in runner.containers(names):
                runner.client.request("POST", f"/containers/{c.id}/kill").read()
        sys.exit(130)


def _print_exit(runner: Runner, source: LogSource) -> None:
    try:
        state = runner.inspect(source.id).get("State") or {}
    except NotFound:
        return
    if not state.get("Running"):
        click.echo(f"{source.name} exited with code {state.get('ExitCode', 0)}")


def _sources(runner: Runner, containers: Sequence[Observed]) -> list[LogSource]:
    from moorage.compose.logs import LogSource

    out = []
    for c in containers:
        try:
            tty = bool((runner.inspect(c.id).get("Config") or {}).get("Tty"))
        except NotFound:
            continue
        out.append(LogSource(c.id, _short_name(runner.project, c), c.service, tty))
    return out


def _short_name(project: Project, c: Observed) -> str:
    """What docker compose shows: the name without the project prefix (``web-1``)."""
    prefix = f"{project.name}-"
    return c.name.removeprefix(prefix) if c.name.startswith(prefix) else c.name


class _Printer:
    """``name  | line``, the names padded to one width, each service in its colour."""

    def __init__(
        self,
        sources: Sequence[LogSource],
        project: Project,
        *,
        colour: bool,
        prefix: bool,
        timestamps: bool,
    ) -> None:
        self.width = max((len(s.name) for s in sources), default=0)
        order = project.order()
        self.colours = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(order)}
        self.colour = colour
        self.prefix = prefix
        self.timestamps = timestamps
        self.out = sys.stdout

    def print(self, line: LogLine) -> None:
        if line.end:
            return
        text = f"{line.timestamp} {line.text}" if self.timestamps else line.text
        if self.prefix:
            head = f"{line.source.name.ljust(self.width)}  | "
            if self.colour:
                head = f"\x1b[{self.colours.get(line.source.service, 37)}m{head}\x1b[0m"
            text = head + text
        self.out.write(text + "\n")
        self.out.flush()


@compose.command("down")
@click.option("-v", "--volumes", is_flag=True, help="remove named volumes and anonymous ones")
@click.option("--rmi", type=click.Choice(["local", "all"]), default=None, help="remove images")
@click.option("--remove-orphans", is_flag=True, help="remove containers of removed services")
@click.option("-t", "--timeout", type=int, default=None, help="stop timeout (seconds)")
@click.pass_context
def down_cmd(
    ctx: click.Context, volumes: bool, rmi: str | None, remove_orphans: bool, timeout: int | None
) -> None:
    """Stop and remove containers and networks (and volumes, images)."""
    state = _state(ctx)
    state.runner(state.project()).down(
        volumes=volumes, rmi=rmi, remove_orphans=remove_orphans, timeout=timeout
    )


@compose.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="show stopped containers too")
@click.option("-q", "--quiet", is_flag=True, help="only the ids")
@click.option("--services", "only_services", is_flag=True, help="only the service names")
@click.option("--format", "fmt", default=None, help="table or json")
@click.argument("services", nargs=-1)
@click.pass_context
def ps_cmd(
    ctx: click.Context,
    show_all: bool,
    quiet: bool,
    only_services: bool,
    fmt: str | None,
    services: tuple[str, ...],
) -> None:
    """List the project's containers."""
    from moorage.cli.output import print_rows

    state = _state(ctx)
    project = state.project()
    runner = state.runner(project)
    containers = runner.containers(_names(services), include_stopped=show_all, oneoff=True)
    if quiet:
        for c in containers:
            click.echo(c.id)
        return
    if only_services:
        for name in dict.fromkeys(c.service for c in containers):
            click.echo(name)
        return
    summaries = {
        s["Id"]: s
        for s in runner.client.get_json(
            "/containers/json",
            all=int(show_all),
            filters={"label": [f"com.docker.compose.project={project.name}"]},
        )
    }
    rows = []
    for c in containers:
        s = summaries.get(c.id) or {}
        rows.append(
            {
                "Name": c.name,
                "Image": s.get("Image", ""),
                "Command": _quoted(s.get("Command", "")),
                "Service": c.service,
                "Created": _age(s.get("Created", 0)),
                "Status": s.get("Status", c.state),
                "State": c.state,
                "Ports": _ports(s.get("Ports") or []),
                "ID": c.id,
            }
        )
    print_rows(
        rows,
        [
            ("NAME", "Name"),
            ("IMAGE", "Image"),
            ("COMMAND", "Command"),
            ("SERVICE", "Service"),
            ("CREATED", "Created"),
            ("STATUS", "Status"),
            ("PORTS", "Ports"),
        ],
        fmt,
    )


def _quoted(command: str) -> str:
    if len(command) > 20:
        command = command[:19] + "…"
    return f'"{command}"'


def _age(created: float) -> str:
    from moorage.cli.output import human_age

    return human_age(created)


def _ports(ports: list[dict[str, Any]]) -> str:
    out = []
    for p in ports:
        private = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            out.append(f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}->{private}")
        else:
            out.append(private)
    return ", ".join(dict.fromkeys(out))


@compose.command("logs")
@click.option("-f", "--follow", is_flag=True, help="follow the output")
@click.option("-n", "--tail", default="all", help="lines from the end of each log")
@click.option("-t", "--timestamps", is_flag=True, help="show timestamps")
@click.option("--no-color", is_flag=True, help="monochrome output")
@click.option("--no-log-prefix", is_flag=True, help="no name prefix")
@click.argument("services", nargs=-1)
@click.pass_context
def logs_cmd(
    ctx: click.Context,
    follow: bool,
    tail: str,
    timestamps: bool,
    no_color: bool,
    no_log_prefix: bool,
    services: tuple[str, ...],
) -> None:
    """Show the output of the project's containers."""
    from moorage.compose.logs import collect_logs, stream_logs

    if tail != "all" and not tail.isdigit():
        raise InvalidArgument(f"invalid --tail {tail!r}: a number or all")
    state = _state(ctx)
    project = state.project()
    runner = state.runner(project)
    sources = _sources(runner, runner.containers(_names(services)))
    printer = _Printer(
        sources,
        project,
        colour=not no_color and sys.stdout.isatty(),
        prefix=not no_log_prefix,
        timestamps=timestamps,
    )
    try:
        if follow:
            for line in stream_logs(runner.client, sources, follow=True, tail=tail):
                printer.print(line)
        else:
            for line in collect_logs(runner.client, sources, tail=tail):
                printer.print(line)
    except KeyboardInterrupt:
        sys.exit(130)


@compose.command("build")
@click.option("--no-cache", is_flag=True, help="do not use the build cache")
@click.option("--pull", is_flag=True, help="always look for newer base images")
@click.option("-q", "--quiet", is_flag=True, help="do not print the build's output")
@click.argument("services", nargs=-1)
@click.pass_context
def build_cmd(
    ctx: click.Context, no_cache: bool, pull: bool, quiet: bool, services: tuple[str, ...]
) -> None:
    """Build the services' images."""
    state = _state(ctx)
    project = state.project(services)
    runner = state.runner(project)
    if quiet:
        runner.output = lambda text: None
    for name in project.order(_names(services), with_deps=False):
        service = project.services[name]
        if service.build is not None:
            runner.build(service, no_cache=no_cache, pull=pull)


@compose.command("pull")
@click.option("--ignore-pull-failures", is_flag=True, help="go on when a pull fails")
@click.option("-q", "--quiet", is_flag=True, help="no progress")
@click.argument("services", nargs=-1)
@click.pass_context
def pull_cmd(
    ctx: click.Context, ignore_pull_failures: bool, quiet: bool, services: tuple[str, ...]
) -> None:
    """Pull the services' images."""
    state = _state(ctx)
    project = state.project(services)
    runner = state.runner(project)
    if quiet:
        runner.progress = lambda line: None
    for name in project.order(_names(services), with_deps=False):
        service = project.services[name]
        if service.build is not None and "image" not in service.config:
            continue  # built here, nothing to pull
        try:
            runner.pull(service)
        except MoorageError as exc:
            if not ignore_pull_failures:
                raise
            click.echo(f"WARN: {exc}", err=True)


@compose.command("push")
@click.argument("services", nargs=-1)
@click.pass_context
def push_cmd(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Push the images of the services that build one."""
    state = _state(ctx)
    project = state.project(services)
    runner = state.runner(project)
    for name in project.order(_names(services), with_deps=False):
        service = project.services[name]
        if service.build is not None:
            runner.push(service)


def _container(runner: Runner, service: str, index: int) -> Observed:
    runner.project.service(service)
    for c in runner.containers([service], include_stopped=False):
        if c.number == index:
            return c
    raise NotFound(f"service {service!r} is not running (container number {index})")


def _env(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid environment variable: {item}")
        if sep:
            out[key] = value
        elif key in os.environ:
            out[key] = os.environ[key]
    return out


_EXEC_SETTINGS = {"allow_interspersed_args": False, "ignore_unknown_options": True}


@compose.command("exec", context_settings=_EXEC_SETTINGS)
@click.option("-T", "--no-tty", "no_tty", is_flag=True, help="do not allocate a TTY")
@click.option("-d", "--detach", is_flag=True, help="run the command in the background")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE (repeatable)")
@click.option("-w", "--workdir", default=None, help="working directory")
@click.option("-u", "--user", default=None, help="user")
@click.option("--index", type=int, default=1, help="which container of the service")
@click.option("--privileged", is_flag=True, help="extended privileges")
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_cmd(
    ctx: click.Context,
    no_tty: bool,
    detach: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    index: int,
    privileged: bool,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Run a command in a running container of a service."""
    state = _state(ctx)
    runner = state.runner(state.project())
    c = _container(runner, service, index)
    tty = not no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    interactive = not detach and not no_tty and sys.stdin.isatty()
    body = {
        "User": user or "",
        "Privileged": privileged,
        "Tty": tty,
        "AttachStdin": interactive,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Env": [f"{k}={v}" for k, v in _env(env).items()],
        "WorkingDir": workdir or "",
        "Cmd": list(command),
    }
    cl = runner.client
    exec_id = cl.request("POST", f"/containers/{c.id}/exec", json_body=body).json()["Id"]
    if detach:
        cl.request("POST", f"/exec/{exec_id}/start", json_body={"Detach": True}).read()
        return
    conn = cl.hijack("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty})
    _relay(conn, tty, interactive)
    from moorage.cli.containers import exec_exit_code

    status = exec_exit_code(cl, exec_id)
    if status:
        sys.exit(status)


def _relay(conn: Any, tty: bool, stdin: bool) -> None:
    from moorage.cli import streaming

    try:
        streaming.relay(
            conn,
            tty=tty,
            stdin=sys.stdin.buffer if stdin else None,
            stdout=sys.stdout.buffer,
            stderr=sys.stdout.buffer if tty else sys.stderr.buffer,
        )
    finally:
        conn.close()


@compose.command("run", context_settings=_EXEC_SETTINGS)
@click.option("--rm", "remove", is_flag=True, help="remove the container when it exits")
@click.option("-d", "--detach", is_flag=True, help="run in the background, print the name")
@click.option("-T", "--no-tty", "no_tty", is_flag=True, help="do not allocate a TTY")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE (repeatable)")
@click.option("-w", "--workdir", default=None, help="working directory")
@click.option("-u", "--user", default=None, help="user")
@click.option("--entrypoint", default=None, help="override the entrypoint")
@click.option("--name", default=None, help="the container's name")
@click.option("--no-deps", is_flag=True, help="do not start the dependencies")
@click.option("--service-ports", is_flag=True, help="publish the service's ports")
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    remove: bool,
    detach: bool,
    no_tty: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    entrypoint: str | None,
    name: str | None,
    no_deps: bool,
    service_ports: bool,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Run a one-off command in a new container of a service."""
    import shlex

    from moorage.cli import streaming

    state = _state(ctx)
    project = state.project([service])
    runner = state.runner(project)
    svc = project.service(service)
    tty = not no_tty and not detach and sys.stdin.isatty() and sys.stdout.isatty()
    interactive = not detach and sys.stdin.isatty() and not no_tty
    cid, cname = runner.run_container(
        svc,
        command=list(command) or None,
        entrypoint=shlex.split(entrypoint) if entrypoint is not None else None,
        environment=_env(env),
        user=user,
        working_dir=workdir,
        tty=tty,
        stdin_open=interactive,
        name=name,
        auto_remove=remove and detach,
        no_deps=no_deps,
        service_ports=service_ports,
    )
    cl = runner.client
    if detach:
        cl.request("POST", f"/containers/{cid}/start").read()
        click.echo(cname)
        return
    waiter = streaming.ExitWaiter(cl, f"/containers/{cid}/wait", "next-exit")
    try:
        conn = cl.hijack(
            "POST",
            f"/containers/{cid}/attach",
            params={"stream": 1, "stdin": int(interactive), "stdout": 1, "stderr": 1},
        )
        waiter.registered(timeout=2.0)
        cl.request("POST", f"/containers/{cid}/start").read()
        _relay(conn, tty, interactive)
        status = waiter.result(timeout=30.0)
        if status is None:
            state_ = runner.inspect(cid).get("State") or {}
            status = int(state_.get("ExitCode") or 0)
    finally:
        if remove:
            with contextlib.suppress(NotFound):
                cl.request("DELETE", f"/containers/{cid}", params={"force": 1}).read()
    if status:
        sys.exit(status)


@compose.command("start")
@click.argument("services", nargs=-1)
@click.pass_context
def start_cmd(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Start the services' existing containers."""
    state = _state(ctx)
    state.runner(state.project(services)).start(_names(services))


@compose.command("stop")
@click.option("-t", "--timeout", type=int, default=None, help="seconds before a kill")
@click.argument("services", nargs=-1)
@click.pass_context
def stop_cmd(ctx: click.Context, timeout: int | None, services: tuple[str, ...]) -> None:
    """Stop the services' containers."""
    state = _state(ctx)
    state.runner(state.project(services)).stop(_names(services), timeout)


@compose.command("restart")
@click.option("-t", "--timeout", type=int, default=None, help="seconds before a kill")
@click.argument("services", nargs=-1)
@click.pass_context
def restart_cmd(ctx: click.Context, timeout: int | None, services: tuple[str, ...]) -> None:
    """Restart the services' containers."""
    state = _state(ctx)
    state.runner(state.project(services)).restart(_names(services), timeout)


@compose.command("rm")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@click.option("-s", "--stop", is_flag=True, help="stop the containers first")
@click.option("-v", "--volumes", is_flag=True, help="remove their anonymous volumes")
@click.argument("services", nargs=-1)
@click.pass_context
def rm_cmd(
    ctx: click.Context, force: bool, stop: bool, volumes: bool, services: tuple[str, ...]
) -> None:
    """Remove stopped containers of the services."""
    state = _state(ctx)
    runner = state.runner(state.project(services))
    names = runner.project.order(_names(services), with_deps=False)
    candidates = [c for c in runner.containers(names, oneoff=True) if stop or not c.running]
    if not candidates:
        click.echo("No stopped containers", err=True)
        return
    if not force:
        click.echo(f"Going to remove {', '.join(c.name for c in candidates)}", err=True)
        if not click.confirm("Are you sure?", default=False, err=True):
            return
    runner.remove(_names(services), stop=stop, volumes=volumes)


@compose.command("config")
@click.option("--services", "only_services", is_flag=True, help="only the service names")
@click.option("--volumes", "only_volumes", is_flag=True, help="only the volume names")
@click.option("-q", "--quiet", is_flag=True, help="only check the files")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.pass_context
def config_cmd(
    ctx: click.Context, only_services: bool, only_volumes: bool, quiet: bool, fmt: str
) -> None:
    """Check the files and print the resolved project."""
    project = _state(ctx).project()
    if quiet:
        return
    if only_services:
        for name in project.order():
            click.echo(name)
        return
    if only_volumes:
        for name in project.volumes:
            click.echo(name)
        return
    model = project.to_dict()
    if fmt == "json":
        click.echo(json.dumps(model, indent=2))
        return
    import yaml

    click.echo(yaml.safe_dump(model, sort_keys=False, default_flow_style=False), nl=False)


@compose.command("top")
@click.argument("services", nargs=-1)
@click.pass_context
def top_cmd(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Show the processes of the services' containers."""
    state = _state(ctx)
    runner = state.runner(state.project())
    for c in runner.containers(_names(services), include_stopped=False):
        top = runner.client.get_json(f"/containers/{c.id}/top")
        titles = top.get("Titles") or []
        rows = [titles, *(top.get("Processes") or [])]
        widths = [max(len(str(r[i])) for r in rows if i < len(r)) for i in range(len(titles))]
        click.echo(c.name)
        for r in rows:
            cells = (str(v).ljust(w) for v, w in zip(r, widths, strict=False))
            click.echo("   ".join(cells).rstrip())
        click.echo()


@compose.command("images")
@click.option("-q", "--quiet", is_flag=True, help="only the image ids")
@click.argument("services", nargs=-1)
@click.pass_context
def images_cmd(ctx: click.Context, quiet: bool, services: tuple[str, ...]) -> None:
    """List the images the project's containers use."""
    from moorage.cli.output import human_size, print_rows

    state = _state(ctx)
    runner = state.runner(state.project())
    rows = []
    for c in runner.containers(_names(services)):
        image = runner.inspect(c.id).get("Image") or ""
        try:
            info = runner.client.get_json(f"/images/{image}/json")
        except NotFound:
            continue
        tags = info.get("RepoTags") or ["<none>:<none>"]
        repo, _, tag = tags[0].rpartition(":")
        rows.append(
            {
                "Container": c.name,
                "Repository": repo,
                "Tag": tag,
                "ID": str(info.get("Id", "")).removeprefix("sha256:")[:12],
                "Size": human_size(info.get("Size") or 0),
            }
        )
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    print_rows(
        rows,
        [
            ("CONTAINER", "Container"),
            ("REPOSITORY", "Repository"),
            ("TAG", "Tag"),
            ("IMAGE ID", "ID"),
            ("SIZE", "Size"),
        ],
        None,
    )


@compose.command("port")
@click.option("--protocol", default="tcp", type=click.Choice(["tcp", "udp", "sctp"]))
@click.option("--index", type=int, default=1, help="which container of the service")
@click.argument("service")
@click.argument("private_port", type=int)
@click.pass_context
def port_cmd(
    ctx: click.Context, protocol: str, index: int, service: str, private_port: int
) -> None:
    """Print the public address of a service's port."""
    state = _state(ctx)
    runner = state.runner(state.project())
    c = _container(runner, service, index)
    ports = (runner.inspect(c.id).get("NetworkSettings") or {}).get("Ports") or {}
    bindings = ports.get(f"{private_port}/{protocol}") or []
    if not bindings:
        raise NotFound(f"no port {private_port}/{protocol} published for {c.name}")
    first = bindings[0]
    click.echo(f"{first.get('HostIp') or '0.0.0.0'}:{first.get('HostPort')}")


def register(cli: click.Group) -> None:
    cli.add_command(compose)
