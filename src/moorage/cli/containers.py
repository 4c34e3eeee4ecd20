"""Container commands: run, create, start, stop, ps, logs, exec, cp... and ``container``.

Each command is a client of the daemon's Docker Engine API and behaves as the
docker CLI does: same flags, same output, same exit statuses (125 when moor or
the daemon fails for ``run``/``create``, 126/127 when the command cannot be run,
the container's own status otherwise). Parsing lives in ``runopts``, display in
``containerfmt``, the attached stream in ``streaming`` and cp's path rules in
``cp``; they are imported when a command runs, so ``moor --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from moorage.cli.connect import client
from moorage.cli.output import print_rows
from moorage.errors import InvalidArgument, MoorageError, NotFound, NotSupported

if TYPE_CHECKING:
    from moorage.api.client import Client, HijackedConnection
    from moorage.cli.cp import CopyInfo
    from moorage.cli.runopts import CreateRequest
    from moorage.cli.streaming import ExitWaiter

PS_COLUMNS = [
    ("CONTAINER ID", "ID"),
    ("IMAGE", "Image"),
    ("COMMAND", "Command"),
    ("CREATED", "RunningFor"),
    ("STATUS", "Status"),
    ("PORTS", "Ports"),
    ("NAMES", "Names"),
]
# Headers of every field a ps template may use (``table {{.State}}`` -> STATE).
PS_HEADERS = [
    *PS_COLUMNS,
    ("CREATED AT", "CreatedAt"),
    ("STATE", "State"),
    ("SIZE", "Size"),
    ("LABELS", "Labels"),
    ("MOUNTS", "Mounts"),
    ("LOCAL VOLUMES", "LocalVolumes"),
    ("NETWORKS", "Networks"),
]
STATS_COLUMNS = [
    ("CONTAINER ID", "ID"),
    ("NAME", "Name"),
    ("CPU %", "CPUPerc"),
    ("MEM USAGE / LIMIT", "MemUsage"),
    ("MEM %", "MemPerc"),
    ("NET I/O", "NetIO"),
    ("BLOCK I/O", "BlockIO"),
    ("PIDS", "PIDs"),
]
STATS_HEADERS = [*STATS_COLUMNS, ("CONTAINER", "Container")]
_WAIT_GRACE = 5.0  # seconds a wait may lag behind the end of the output
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# --------------------------------------------------------------------------- plumbing


class DockerCommand(click.Command):
    """docker's command-line habits: a usage error exits 125, and a boolean flag
    also takes Go's ``--flag=false`` form (``--sig-proxy=false``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, go_bool_flags(self, args))
        except click.UsageError as exc:
            exc.exit_code = 125
            raise


def go_bool_flags(command: click.Command, args: list[str]) -> list[str]:
    """``--flag=true`` -> ``--flag``; ``--flag=false`` -> ``--no-flag``, or nothing for a
    flag that is off by default. Stops at the first argument that is not an option
    when the command takes no options after its arguments (run's COMMAND)."""
    flags: dict[str, tuple[str, str | None]] = {}
    takes_value: set[str] = set()
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        if param.is_flag:
            off = param.secondary_opts[0] if param.secondary_opts else None
            flags |= {opt: (param.opts[0], off) for opt in param.opts}
        else:
            takes_value.update(param.opts)
    interspersed = command.context_settings.get("allow_interspersed_args", True)
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, has_value, value = arg.partition("=")
        if arg == "--" or (not arg.startswith("-") and not interspersed):
            return out + args[i:]
        if has_value and name in flags and value in _TRUE | _FALSE:
            on, off = flags[name]
            if value in _TRUE:
                out.append(on)
            elif off is not None:
                out.append(off)
        elif arg in takes_value:
            out += args[i : i + 2]
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def _client(ctx: click.Context) -> Client:
    return client(ctx.obj.get("host") if ctx.obj else None)


def daemon_error(exc: MoorageError) -> str:
    """How docker words a failure: the daemon's refusals say so, a dead socket not."""
    from moorage.api.client import ConnectionFailed

    if isinstance(exc, ConnectionFailed):
        return str(exc)
    return f"Error response from daemon: {exc}"


def _for_each(names: Iterable[str], action: Callable[[str], object], *, echo: bool = True) -> None:
    """Run ``action`` on every name, reporting failures as docker does, then exit 1."""
    failed = False
    for name in names:
        try:
            action(name)
        except MoorageError as exc:
            click.echo(daemon_error(exc), err=True)
            failed = True
            continue
        if echo:
            click.echo(name)
    if failed:
        sys.exit(1)


def _fail(message: str, command: str, code: int = 125) -> NoReturn:
    click.echo(f"moor: {message}\n\nRun 'moor {command} --help' for more information", err=True)
    sys.exit(code)


def _filters(items: Iterable[str]) -> dict[str, dict[str, bool]] | None:
    """``--filter k=v`` as the API's JSON: ``{"k": {"v": true}}``."""
    out: dict[str, dict[str, bool]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), {})[value.strip()] = True
    return out or None


def _stdout() -> Any:
    return sys.stdout.buffer


def _stderr() -> Any:
    return sys.stderr.buffer


def _inspect_container(c: Client, name: str) -> dict[str, Any]:
    result: dict[str, Any] = c.get_json(f"/containers/{name}/json")
    return result


# --------------------------------------------------------------------------- create, run

_CREATE_HELP = {"help_option_names": ["--help"]}  # -h is --hostname, as in docker
_RUN_SETTINGS = {**_CREATE_HELP, "allow_interspersed_args": False}


def _create_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The flags ``create`` and ``run`` share (field names of runopts.CreateFlags)."""
    options = [
        click.option("--name", help="Assign a name to the container"),
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open"),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
        click.option("--rm", is_flag=True, help="Remove the container when it exits"),
        click.option("-h", "--hostname", help="Container host name"),
        click.option("-u", "--user", help="Username or UID (<name|uid>[:<group|gid>])"),
        click.option("-w", "--workdir", help="Working directory inside the container"),
        click.option("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
        click.option("-e", "--env", multiple=True, help="Set environment variables"),
        click.option("--env-file", multiple=True, help="Read in a file of environment variables"),
        click.option("-l", "--label", multiple=True, help="Set meta data on a container"),
        click.option("--label-file", multiple=True, help="Read in a file of labels"),
        click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only"),
        click.option("--tmpfs", multiple=True, help="Mount a tmpfs directory (PATH[:OPTS])"),
        click.option("-v", "--volume", multiple=True, help="Bind mount a volume"),
        click.option("--mount", multiple=True, help="Attach a filesystem mount"),
        click.option("-m", "--memory", help="Memory limit"),
        click.option("--memory-swap", help="Memory plus swap limit: -1 for unlimited swap"),
        click.option("--cpus", help="Number of CPUs"),
        click.option("-c", "--cpu-shares", help="CPU shares (relative weight)"),
        click.option("--pids-limit", help="Tune container pids limit (-1 for unlimited)"),
        click.option("--shm-size", help="Size of /dev/shm"),
        click.option("--oom-score-adj", help="Tune host's OOM preferences (-1000 to 1000)"),
        click.option("--restart", default="no", help="Restart policy to apply"),
        click.option("--health-cmd", help="Command to run to check health"),
        click.option("--health-interval", help="Time between running the check (ms|s|m|h)"),
        click.option("--health-timeout", help="Maximum time to allow one check to run"),
        click.option("--health-start-period", help="Start period before retries count"),
        click.option("--health-start-interval", help="Time between checks in the start period"),
        click.option("--health-retries", help="Consecutive failures needed to be unhealthy"),
        click.option("--no-healthcheck", is_flag=True, help="Disable any HEALTHCHECK"),
        click.option("--init", is_flag=True, help="Run an init that forwards signals and reaps"),
        click.option("--cap-add", multiple=True, help="Add Linux capabilities"),
        click.option("--cap-drop", multiple=True, help="Drop Linux capabilities"),
        click.option("--security-opt", multiple=True, help="Security options"),
        click.option("--stop-signal", help="Signal to stop the container"),
        click.option("--stop-timeout", help="Timeout (in seconds) to stop a container"),
        click.option("--ulimit", multiple=True, help="Ulimit options (name=soft[:hard])"),
        click.option("--privileged", is_flag=True, help="Give extended privileges"),
        click.option("--log-driver", help="Logging driver (json-file)"),
        click.option("--log-opt", multiple=True, help="Log driver options"),
        click.option("-p", "--publish", multiple=True, help="Publish a container's port(s)"),
        click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports"),
        click.option("--expose", multiple=True, help="Expose a port or a range of ports"),
        click.option("--network", "--net", "network", help="Connect a container to a network"),
        click.option(
            "--network-alias",
            "--net-alias",
            "network_alias",
            multiple=True,
            help="Add network-scoped alias for the container",
        ),
        click.option("--ip", help="IPv4 address (e.g., 172.30.100.104)"),
        click.option("--dns", multiple=True, help="Set custom DNS servers"),
        click.option("--add-host", multiple=True, help="Add a host-to-IP mapping (host:ip)"),
        click.option("--sysctl", multiple=True, help="Sysctl options"),
        click.option("--platform", help="Set platform if the image is multi-platform"),
        click.option("--pull", default="missing", help='Pull image ("missing", "never")'),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("create", cls=DockerCommand, context_settings=_RUN_SETTINGS)
@_create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create_cmd(ctx: click.Context, /, image: str, command: tuple[str, ...], **flags: Any) -> None:
    """Create a new container."""
    c = _client(ctx)
    request = _create_request(image, command, flags, "create")
    click.echo(_create(c, request, "create"))


@click.command("run", cls=DockerCommand, context_settings=_RUN_SETTINGS)
@_create_options
@click.option("-d", "--detach", is_flag=True, help="Run in the background, print the id")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy signals to the process")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(
    ctx: click.Context, /, image: str, command: tuple[str, ...], sig_proxy: bool, **flags: Any
) -> None:
    """Create and run a new container from an image."""
    c = _client(ctx)
    request = _create_request(image, command, flags, "run")
    body = request.body
    if body["AttachStdin"] and body["Tty"] and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY")
    cid = _create(c, request, "run")
    if flags["detach"]:
        _start(c, cid, "run")
        click.echo(cid)
        return
    status = _run_attached(c, cid, body, sig_proxy)
    if status:
        sys.exit(status)


def _create_request(
    image: str, command: Sequence[str], flags: dict[str, Any], name: str
) -> CreateRequest:
    from dataclasses import fields

    from moorage.cli import runopts
    from moorage.cli.streaming import terminal_size

    known = {f.name for f in fields(runopts.CreateFlags)}
    parsed = runopts.CreateFlags(**{k: v for k, v in flags.items() if k in known})
    try:
        return runopts.build_create(
            parsed,
            image,
            command,
            environ=os.environ,
            cwd=os.getcwd(),
            console_size=terminal_size(sys.stdout),
        )
    except InvalidArgument as exc:
        _fail(str(exc), name)


def _create(c: Client, request: CreateRequest, command: str) -> str:
    """The new container's id; warnings to stderr; failures exit 125 (docker's)."""
    from moorage.cli import runopts

    image = request.body["Image"]
    try:
        _check_platform(c, image, request.platform)
        if request.pull == "always":
            _pull(c, image, request.platform)
        try:
            created = _post_create(c, request)
        except NotFound as exc:
            if request.pull != "missing" or "image" not in str(exc).lower():
                raise
            click.echo(
                f"Unable to find image '{runopts.image_familiar_name(image)}' locally", err=True
            )
            _pull(c, image, request.platform)
            created = _post_create(c, request)
    except MoorageError as exc:
        _fail(daemon_error(exc), command)
    for warning in created.get("Warnings") or ():
        click.echo(f"WARNING: {warning}", err=True)
    return str(created["Id"])


def _post_create(c: Client, request: CreateRequest) -> dict[str, Any]:
    params = {"name": request.name} if request.name else None
    result: dict[str, Any] = c.request(
        "POST", "/containers/create", params=params, json_body=request.body
    ).json()
    return result


def _pull(c: Client, image: str, platform: str | None) -> None:
    """Pull through the daemon (``POST /images/create``) with the registry's stored
    credentials, as ``moor pull`` does; progress on stderr."""
    from moorage.cli import runopts
    from moorage.cli.progress import show_stream
    from moorage.cli.transfer import auth_header_for

    response = c.request(
        "POST",
        "/images/create",
        params={**runopts.pull_params(image), "platform": platform},
        headers=auth_header_for(image),
    )
    show_stream(response.iter_json_lines(), sys.stderr)


def _check_platform(c: Client, image: str, wanted: str | None) -> None:
    """``--platform`` only matters when it contradicts the local image."""
    if wanted is None:
        return
    from moorage.oci.platform import Platform, matches, parse_platform

    try:
        info = c.get_json(f"/images/{image}/json")
    except NotFound:
        return  # the pull path decides
    have = Platform(info.get("Os", "linux"), info.get("Architecture", ""), info.get("Variant"))
    if not matches(parse_platform(wanted), have):
        raise InvalidArgument(
            f"image with reference {image} was found but its platform ({have}) does not "
            f"match the specified platform ({wanted})"
        )


def start_exit_status(message: str) -> int:
    """docker's verdict on a failed start: 127 not found, 126 not runnable, else 125."""
    if any(
        s in message
        for s in ("executable file not found", "no such file or directory", "file not found")
    ):
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def _start(c: Client, cid: str, command: str) -> None:
    try:
        c.request("POST", f"/containers/{cid}/start").read()
    except MoorageError as exc:
        _fail(daemon_error(exc), command, start_exit_status(str(exc)))


def _run_attached(c: Client, cid: str, body: dict[str, Any], sig_proxy: bool) -> int:
    """docker run's attached path: wait, attach, start, relay; the exit status."""
    from moorage.cli import streaming

    tty = bool(body["Tty"])
    condition = "removed" if body["HostConfig"].get("AutoRemove") else "next-exit"
    waiter = streaming.ExitWaiter(c, f"/containers/{cid}/wait", condition)
    proxy = streaming.SignalProxy(_killer(c, cid)).start() if sig_proxy else None
    try:
        conn = _attach(c, cid, stdin=bool(body["AttachStdin"]))
        waiter.registered(timeout=2.0)
        try:
            c.request("POST", f"/containers/{cid}/start").read()
        except MoorageError as exc:
            conn.close()
            if condition == "removed":
                waiter.result(timeout=10.0)
            _fail(daemon_error(exc), "run", start_exit_status(str(exc)))
        detached = _relay_with_resize(
            c, f"/containers/{cid}/resize", conn, tty, body["AttachStdin"]
        )
    finally:
        if proxy is not None:
            proxy.stop()
    if detached:
        return 0
    return _exit_status(c, cid, waiter)


def _exit_status(c: Client, cid: str, waiter: ExitWaiter) -> int:
    """The container's exit status once its output has ended.

    The wait request answers that; should the daemon fail to (a removal that
    never completes), the container's recorded exit code is used, not a hang.
    """
    gone = False
    while (status := waiter.result(timeout=_WAIT_GRACE)) is None:
        try:
            state = _inspect_container(c, cid).get("State") or {}
        except NotFound:
            if gone:  # removed, and still no answer: the status is lost
                click.echo(f"moor: no exit status for container {cid[:12]}", err=True)
                return 125
            gone = True
            continue
        if not state.get("Running"):
            return int(state.get("ExitCode") or 0)
    return status


def _attach(c: Client, cid: str, *, stdin: bool) -> HijackedConnection:
    params = {"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1}
    try:
        return c.hijack("POST", f"/containers/{cid}/attach", params=params)
    except MoorageError as exc:
        _fail(daemon_error(exc), "run")


def _relay_with_resize(
    c: Client,
    resize_path: str,
    conn: HijackedConnection,
    tty: bool,
    stdin: bool,
    grow_first: bool = False,
) -> bool:
    """Relay the stream; with a TTY on a terminal, keep the remote size in step."""
    from moorage.cli import streaming

    monitor = None
    if tty and sys.stdout.isatty():

        def resize(rows: int, cols: int) -> None:
            c.request("POST", resize_path, params={"h": rows, "w": cols}).read()

        if grow_first:
            # One size off, then the real one: a full-screen program redraws (docker's trick).
            size = streaming.terminal_size(sys.stdout)
            if size:
                resize(size[0] + 1, size[1] + 1)
        monitor = streaming.ResizeMonitor(resize, sys.stdout).start()
    try:
        return streaming.relay(
            conn,
            tty=tty,
            stdin=sys.stdin.buffer if stdin else None,
            stdout=_stdout(),
            stderr=_stdout() if tty else _stderr(),
        )
    finally:
        if monitor is not None:
            monitor.stop()
        conn.close()


def _killer(c: Client, cid: str) -> Callable[[str], None]:
    def kill(signal_name: str) -> None:
        c.request("POST", f"/containers/{cid}/kill", params={"signal": signal_name}).read()

    return kill


# --------------------------------------------------------------------------- lifecycle


@click.command("start", cls=DockerCommand)
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start_cmd(
    ctx: click.Context, attach: bool, interactive: bool, containers: tuple[str, ...]
) -> None:
    """Start one or more stopped containers."""
    c = _client(ctx)
    if not (attach or interactive):
        _start_detached(c, containers)
        return
    if len(containers) > 1:
        raise InvalidArgument("you cannot start and attach multiple containers at once")
    status = _start_attached(c, containers[0], interactive)
    if status:
        sys.exit(status)


def _start_detached(c: Client, containers: Sequence[str]) -> None:
    failed = []
    for name in containers:
        try:
            c.request("POST", f"/containers/{name}/start").read()
        except MoorageError as exc:
            click.echo(daemon_error(exc), err=True)
            failed.append(name)
            continue
        click.echo(name)
    if failed:
        click.echo(f"moor: failed to start containers: {', '.join(failed)}", err=True)
        sys.exit(1)


def _start_attached(c: Client, name: str, interactive: bool) -> int:
    from moorage.cli import streaming

    info = _inspect_container(c, name)
    cid, config = info["Id"], info.get("Config") or {}
    tty = bool(config.get("Tty"))
    stdin = interactive and bool(config.get("OpenStdin"))
    if stdin and tty and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY")
    proxy = None if tty else streaming.SignalProxy(_killer(c, cid)).start()
    try:
        conn = c.hijack(
            "POST",
            f"/containers/{cid}/attach",
            params={"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1},
        )
        auto_remove = (info.get("HostConfig") or {}).get("AutoRemove")
        condition = "removed" if auto_remove else "next-exit"
        waiter = streaming.ExitWaiter(c, f"/containers/{cid}/wait", condition)
        waiter.registered(timeout=2.0)
        try:
            c.request("POST", f"/containers/{cid}/start").read()
        except MoorageError:
            conn.close()
            raise
        detached = _relay_with_resize(c, f"/containers/{cid}/resize", conn, tty, stdin)
    finally:
        if proxy is not None:
            proxy.stop()
    if detached:
        return 0
    return _exit_status(c, cid, waiter)


def _timeout_param(timeout: int | None, signal_name: str | None) -> dict[str, Any]:
    return {"t": timeout, "signal": signal_name or None}


@click.command("stop", cls=DockerCommand)
@click.option("-t", "--timeout", "--time", type=int, help="Seconds to wait before killing it")
@click.option("-s", "--signal", "signal_name", help="Signal to send to the container")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop_cmd(
    ctx: click.Context, timeout: int | None, signal_name: str | None, containers: tuple[str, ...]
) -> None:
    """Stop one or more running containers."""
    c = _client(ctx)
    params = _timeout_param(timeout, signal_name)
    _for_each(
        containers, lambda n: c.request("POST", f"/containers/{n}/stop", params=params).read()
    )


@click.command("restart", cls=DockerCommand)
@click.option("-t", "--timeout", "--time", type=int, help="Seconds to wait before killing it")
@click.option("-s", "--signal", "signal_name", help="Signal to send to the container")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def restart_cmd(
    ctx: click.Context, timeout: int | None, signal_name: str | None, containers: tuple[str, ...]
) -> None:
    """Restart one or more containers."""
    c = _client(ctx)
    params = _timeout_param(timeout, signal_name)
    _for_each(
        containers, lambda n: c.request("POST", f"/containers/{n}/restart", params=params).read()
    )


@click.command("kill", cls=DockerCommand)
@click.option("-s", "--signal", "signal_name", help="Signal to send to the container")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill_cmd(ctx: click.Context, signal_name: str | None, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    c = _client(ctx)
    params = {"signal": signal_name or None}
    _for_each(
        containers, lambda n: c.request("POST", f"/containers/{n}/kill", params=params).read()
    )


@click.command("rm", cls=DockerCommand)
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes too")
@click.option("-l", "--link", is_flag=True, help="Remove the specified link")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm_cmd(
    ctx: click.Context, force: bool, volumes: bool, link: bool, containers: tuple[str, ...]
) -> None:
    """Remove one or more containers."""
    c = _client(ctx)
    failed = False
    for name in containers:
        name = name.strip("/")
        try:
            if not name:
                raise InvalidArgument("container name cannot be empty")
            c.request(
                "DELETE", f"/containers/{name}", params={"force": force, "v": volumes, "link": link}
            ).read()
        except NotFound as exc:
            if not force:  # docker rm -f of a container that is gone is not an error
                click.echo(daemon_error(exc), err=True)
                failed = True
            continue
        except MoorageError as exc:
            click.echo(daemon_error(exc), err=True)
            failed = True
            continue
        click.echo(name)
    if failed:
        sys.exit(1)


@click.command("pause", cls=DockerCommand)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    c = _client(ctx)
    _for_each(containers, lambda n: c.request("POST", f"/containers/{n}/pause").read())


@click.command("unpause", cls=DockerCommand)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    c = _client(ctx)
    _for_each(containers, lambda n: c.request("POST", f"/containers/{n}/unpause").read())


@click.command("rename", cls=DockerCommand)
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename_cmd(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    old, new = container.strip(), new_name.strip()
    if not old or not new:
        raise InvalidArgument("Neither old nor new names may be empty")
    _client(ctx).request("POST", f"/containers/{old}/rename", params={"name": new}).read()


@click.command("update", cls=DockerCommand)
@click.option("-m", "--memory", help="Memory limit")
@click.option("--memory-reservation", help="Memory soft limit")
@click.option("--memory-swap", help="Memory plus swap limit: -1 for unlimited swap")
@click.option("--cpus", help="Number of CPUs")
@click.option("-c", "--cpu-shares", help="CPU shares (relative weight)")
@click.option("--cpu-period", help="Limit CPU CFS (Completely Fair Scheduler) period")
@click.option("--cpu-quota", help="Limit CPU CFS (Completely Fair Scheduler) quota")
@click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
@click.option("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
@click.option("--pids-limit", help="Tune container pids limit (set -1 for unlimited)")
@click.option("--restart", help="Restart policy to apply when a container exits")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def update_cmd(ctx: click.Context, /, containers: tuple[str, ...], **flags: str | None) -> None:
    """Update configuration of one or more containers."""
    body = update_body(flags)
    c = _client(ctx)
    warnings: list[str] = []
    errors: list[str] = []
    for name in containers:
        try:
            result = c.request("POST", f"/containers/{name}/update", json_body=body).json()
        except MoorageError as exc:
            errors.append(daemon_error(exc))
            continue
        click.echo(name)
        warnings += (result or {}).get("Warnings") or []
    if warnings:
        click.echo("\n".join(warnings))
    if errors:
        click.echo("\n".join(errors), err=True)
        sys.exit(1)


def update_body(flags: dict[str, str | None]) -> dict[str, Any]:
    """The update's body: the fields the flags set, as the docker CLI sends them (the
    daemon checks the values; only their syntax is checked here)."""
    from moorage.cli import runopts

    if all(value is None for value in flags.values()):
        click.echo("you must provide one or more flags when using this command", err=True)
        sys.exit(1)
    memory, swap, reservation = flags["memory"], flags["memory_swap"], flags["memory_reservation"]
    body: dict[str, Any] = {}
    if memory is not None:
        body["Memory"] = runopts.parse_memory(memory, "-m, --memory")
    if reservation is not None:
        body["MemoryReservation"] = runopts.parse_memory(reservation, "--memory-reservation")
    if swap is not None:
        body["MemorySwap"] = runopts.parse_memory_swap(swap)
    if flags["cpus"] is not None:
        body["NanoCpus"] = runopts.parse_cpus(flags["cpus"])
    for key, flag, field in (
        ("cpu_shares", "-c, --cpu-shares", "CpuShares"),
        ("cpu_period", "--cpu-period", "CpuPeriod"),
        ("cpu_quota", "--cpu-quota", "CpuQuota"),
        ("pids_limit", "--pids-limit", "PidsLimit"),
    ):
        if flags[key] is not None:
            body[field] = runopts.parse_int(flags[key], flag)
    for key, field in (("cpuset_cpus", "CpusetCpus"), ("cpuset_mems", "CpusetMems")):
        if flags[key] is not None:
            body[field] = flags[key]
    restart = flags["restart"]
    if restart is not None:
        name, colon, count = restart.partition(":")
        if colon and not name:
            raise InvalidArgument("invalid restart policy format: no policy provided before colon")
        if count and not count.lstrip("+-").isdigit():
            raise InvalidArgument(
                "invalid restart policy format: maximum retry count must be an integer"
            )
        body["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    return body


@click.command("wait", cls=DockerCommand)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    c = _client(ctx)

    def wait(name: str) -> None:
        result = c.request("POST", f"/containers/{name}/wait").json() or {}
        error = result.get("Error") or {}
        if error.get("Message"):
            raise MoorageError(error["Message"])
        click.echo(str(result.get("StatusCode", 0)))

    _for_each(containers, wait, echo=False)


# --------------------------------------------------------------------------- ps, inspect


@click.command("ps", cls=DockerCommand)
@click.option("-a", "--all", "all_containers", is_flag=True, help="Show all containers")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("-n", "--last", type=int, default=-1, help="Show n last created containers")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (key=value)")
@click.option("--format", "fmt", help="table, json or a Go template")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.pass_context
def ps_cmd(
    ctx: click.Context,
    all_containers: bool,
    quiet: bool,
    last: int,
    latest: bool,
    filters: tuple[str, ...],
    fmt: str | None,
    no_trunc: bool,
    size: bool,
) -> None:
    """List containers."""
    from moorage.cli.containerfmt import ps_row

    if fmt and quiet:
        click.echo(
            "WARNING: Ignoring custom format, because both --format and --quiet are set.", err=True
        )
        fmt = None
    limit = 1 if latest and last == -1 else last
    want_size = size or (bool(fmt) and not quiet and ".Size" in (fmt or ""))
    params = {
        "all": all_containers,
        "limit": limit if limit > 0 else None,
        "size": want_size or None,
        "filters": _filters(filters),
    }
    summaries = _client(ctx).get_json("/containers/json", **params)
    rows = [ps_row(s, trunc=not no_trunc) for s in summaries]
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    if fmt and fmt != "table":
        print_rows(rows, PS_HEADERS, fmt)
        return
    print_rows(rows, PS_COLUMNS + ([("SIZE", "Size")] if want_size else []), fmt)


def _inspect_one(c: Client, name: str, kind: str | None, size: bool) -> dict[str, Any]:
    if kind in (None, "container"):
        try:
            result: dict[str, Any] = c.get_json(f"/containers/{name}/json", size=size or None)
            return result
        except NotFound:
            if kind == "container":
                raise NotFound(f"No such container: {name}") from None
    if kind in (None, "image"):
        try:
            image: dict[str, Any] = c.get_json(f"/images/{name}/json")
            return image
        except NotFound:
            if kind == "image":
                raise NotFound(f"No such image: {name}") from None
    raise NotFound(f"No such object: {name}")


def _print_inspected(results: list[dict[str, Any]], fmt: str | None) -> None:
    if fmt:
        from moorage.cli.gotemplate import render

        for result in results:
            click.echo(render(fmt, result))
        return
    click.echo(json.dumps(results, indent=4))


def _inspect(
    ctx: click.Context, names: Sequence[str], fmt: str | None, size: bool, kind: str | None
) -> None:
    c = _client(ctx)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        try:
            results.append(_inspect_one(c, name, kind, size))
        except NotFound as exc:
            errors.append(str(exc))
    if results or not fmt:
        _print_inspected(results, fmt)
    for error in errors:
        click.echo(f"Error: {error}", err=True)
    if errors:
        sys.exit(1)


@click.command("inspect", cls=DockerCommand)
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes for containers")
@click.option("--type", "kind", type=click.Choice(["container", "image"]), help="Object type")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(
    ctx: click.Context, fmt: str | None, size: bool, kind: str | None, names: tuple[str, ...]
) -> None:
    """Return low-level information on containers and images."""
    _inspect(ctx, names, fmt, size, kind)


@click.command("inspect", cls=DockerCommand)
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def container_inspect_cmd(
    ctx: click.Context, fmt: str | None, size: bool, names: tuple[str, ...]
) -> None:
    """Display detailed information on one or more containers."""
    _inspect(ctx, names, fmt, size, "container")


# --------------------------------------------------------------------------- logs, exec, attach


@click.command("logs", cls=DockerCommand)
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("--since", help='Show logs since a timestamp or relative ("42m")')
@click.option("--until", help='Show logs before a timestamp or relative ("42m")')
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end")
@click.argument("container")
@click.pass_context
def logs_cmd(
    ctx: click.Context,
    follow: bool,
    since: str | None,
    until: str | None,
    timestamps: bool,
    details: bool,
    tail: str,
    container: str,
) -> None:
    """Fetch the logs of a container."""
    from moorage.api.streams_client import demux
    from moorage.cli.runopts import timestamp_arg

    c = _client(ctx)
    info = _inspect_container(c, container)
    params = {
        "stdout": True,
        "stderr": True,
        "since": timestamp_arg(since) if since else None,
        "until": timestamp_arg(until) if until else None,
        "timestamps": timestamps or None,
        "follow": follow or None,
        "tail": tail,
        "details": details or None,
    }
    response = c.request("GET", f"/containers/{info['Id']}/logs", params=params)
    try:
        if (info.get("Config") or {}).get("Tty"):
            out = _stdout()
            for chunk in response.iter_available(64 * 1024):
                out.write(chunk)
                out.flush()
        else:
            demux(response.iter_available(64 * 1024), _stdout(), _stderr())
    except KeyboardInterrupt:
        sys.exit(130)


@click.command("exec", cls=DockerCommand, context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background")
@click.option("-u", "--user", help="Username or UID (<name|uid>[:<group|gid>])")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_cmd(
    ctx: click.Context,
    interactive: bool,
    tty: bool,
    detach: bool,
    user: str | None,
    env: tuple[str, ...],
    env_file: tuple[str, ...],
    workdir: str | None,
    privileged: bool,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Execute a command in a running container."""
    from moorage.cli.runopts import parse_env
    from moorage.cli.streaming import terminal_size

    c = _client(ctx)
    _inspect_container(c, container)
    attach_stdin = interactive and not detach
    if attach_stdin and tty and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY")
    body: dict[str, Any] = {
        "User": user or "",
        "Privileged": privileged,
        "Tty": tty,
        "AttachStdin": attach_stdin,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Env": parse_env(env, env_file, os.environ.get),
        "WorkingDir": workdir or "",
        "Cmd": list(command),
    }
    size = terminal_size(sys.stdout) if tty else None
    if size:
        body["ConsoleSize"] = list(size)
    exec_id = c.request("POST", f"/containers/{container}/exec", json_body=body).json()["Id"]
    start = {"Detach": detach, "Tty": tty, **({"ConsoleSize": list(size)} if size else {})}
    if detach:
        c.request("POST", f"/exec/{exec_id}/start", json_body=start).read()
        return
    conn = c.hijack("POST", f"/exec/{exec_id}/start", body=start)
    if _relay_with_resize(c, f"/exec/{exec_id}/resize", conn, tty, attach_stdin):
        click.echo("read escape sequence", err=True)
        sys.exit(1)
    status = exec_exit_code(c, exec_id)
    if status:
        sys.exit(status)


def exec_exit_code(c: Client, exec_id: str) -> int:
    """The exec's exit code; the stream can end a moment before the daemon records it."""
    deadline = time.monotonic() + 5.0
    while True:
        info = c.get_json(f"/exec/{exec_id}/json")
        if not info.get("Running") or time.monotonic() > deadline:
            return int(info.get("ExitCode") or 0)
        time.sleep(0.02)


@click.command("attach", cls=DockerCommand)
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy signals to the process")
@click.argument("container")
@click.pass_context
def attach_cmd(ctx: click.Context, no_stdin: bool, sig_proxy: bool, container: str) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    from moorage.cli import streaming

    c = _client(ctx)
    info = _inspect_container(c, container)
    _check_attachable(info.get("State") or {})
    cid, config = info["Id"], info.get("Config") or {}
    tty = bool(config.get("Tty"))
    stdin = not no_stdin and bool(config.get("OpenStdin"))
    if stdin and tty and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY")
    waiter = streaming.ExitWaiter(c, f"/containers/{cid}/wait")
    proxy = streaming.SignalProxy(_killer(c, cid)).start() if sig_proxy and not tty else None
    try:
        conn = c.hijack(
            "POST",
            f"/containers/{cid}/attach",
            params={"stream": 1, "stdin": int(stdin), "stdout": 1, "stderr": 1},
        )
        detached = _relay_with_resize(
            c, f"/containers/{cid}/resize", conn, tty, stdin, grow_first=True
        )
    finally:
        if proxy is not None:
            proxy.stop()
    if detached:
        click.echo("read escape sequence", err=True)
        sys.exit(1)
    status = _exit_status(c, cid, waiter)
    if status:
        sys.exit(status)


def _check_attachable(state: dict[str, Any]) -> None:
    if not state.get("Running"):
        raise InvalidArgument("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise InvalidArgument("You cannot attach to a paused container, unpause it first")
    if state.get("Restarting"):
        raise InvalidArgument(
            "You cannot attach to a restarting container, wait until it is running"
        )


# --------------------------------------------------------------------------- top, stats, port, diff


@click.command("top", cls=DockerCommand, context_settings={"allow_interspersed_args": False})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top_cmd(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container (CONTAINER [ps OPTIONS])."""
    from moorage.cli.containerfmt import tabwrite

    params = {"ps_args": " ".join(ps_args) or None}
    result = _client(ctx).get_json(f"/containers/{container}/top", **params)
    rows = [result.get("Titles") or [], *(result.get("Processes") or [])]
    for line in tabwrite(rows, 20, 3):
        click.echo(line)


@click.command("stats", cls=DockerCommand)
@click.option("-a", "--all", "all_containers", is_flag=True, help="Show all containers")
@click.option("--no-stream", is_flag=True, help="Print the first result and stop")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--format", "fmt", help="table, json or a Go template")
@click.argument("containers", nargs=-1)
@click.pass_context
def stats_cmd(
    ctx: click.Context,
    all_containers: bool,
    no_stream: bool,
    no_trunc: bool,
    fmt: str | None,
    containers: tuple[str, ...],
) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    c = _client(ctx)
    names = list(containers) or _running(c, all_containers)
    if no_stream:
        rows = _stats_once(c, names, not no_trunc)
        _print_stats(rows, fmt)
        if containers and any(r["CPUPerc"] == "--" for r in rows):
            sys.exit(1)
        return
    try:
        _stats_stream(c, names, all_containers, not containers, not no_trunc, fmt)
    except KeyboardInterrupt:
        sys.exit(130)


def _running(c: Client, all_containers: bool) -> list[str]:
    return [s["Id"][:12] for s in c.get_json("/containers/json", all=all_containers)]


def _stats_once(c: Client, names: Sequence[str], trunc: bool) -> list[dict[str, str]]:
    """One sample per container, fetched in parallel (each takes the daemon ~1s)."""
    from concurrent.futures import ThreadPoolExecutor

    from moorage.cli.containerfmt import stats_row

    def sample(name: str) -> dict[str, str]:
        try:
            stats = c.get_json(f"/containers/{name}/stats", stream=False)
        except MoorageError as exc:
            click.echo(daemon_error(exc), err=True)
            return stats_row(name, None, trunc=trunc)
        return stats_row(name, stats, trunc=trunc)

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
        return list(pool.map(sample, names))


def _print_stats(rows: list[dict[str, str]], fmt: str | None) -> None:
    if fmt and fmt != "table":
        print_rows(rows, STATS_HEADERS, fmt)
    else:
        print_rows(rows, STATS_COLUMNS, None)


def _stats_stream(
    c: Client, names: list[str], all_containers: bool, auto: bool, trunc: bool, fmt: str | None
) -> None:
    """Redraw the table twice a second from one stats stream per container; with no
    container named, follow the running ones as they come and go."""
    import threading

    from moorage.cli.containerfmt import stats_row

    rows: dict[str, dict[str, str]] = {name: stats_row(name, None, trunc=trunc) for name in names}
    lock = threading.Lock()

    def watch(name: str) -> None:
        try:
            response = c.request("GET", f"/containers/{name}/stats", params={"stream": True})
            for sample in response.iter_json_lines():
                with lock:
                    rows[name] = stats_row(name, sample, trunc=trunc)
        except (MoorageError, OSError, ValueError):
            pass  # the container went away, or the daemon did
        with lock:
            if auto:
                rows.pop(name, None)
            else:
                rows[name] = stats_row(name, None, trunc=trunc)

    def follow(name: str) -> None:
        threading.Thread(target=watch, args=(name,), name="moor-stats", daemon=True).start()

    for name in names:
        follow(name)
    listed = time.monotonic()
    while True:
        time.sleep(0.5)
        if auto and time.monotonic() - listed > 2.0:
            listed = time.monotonic()
            for name in _running(c, all_containers):
                with lock:
                    new = name not in rows
                    if new:
                        rows[name] = stats_row(name, None, trunc=trunc)
                if new:
                    follow(name)
        with lock:
            current = list(rows.values())
        click.echo("\033[2J\033[H", nl=False)
        _print_stats(current, fmt)


@click.command("port", cls=DockerCommand)
@click.argument("container")
@click.argument("private_port", required=False)
@click.pass_context
def port_cmd(ctx: click.Context, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    from moorage.cli.containerfmt import join_host_port, natural_key

    info = _inspect_container(_client(ctx), container)
    ports: dict[str, Any] = (info.get("NetworkSettings") or {}).get("Ports") or {}
    lines: list[str] = []
    if private_port:
        key = private_port if "/" in private_port else f"{private_port}/tcp"
        frontends = ports.get(key) or []
        if not frontends:
            raise NotFound(f"no public port '{private_port}' published for {container}")
        lines = [join_host_port(f.get("HostIp", ""), f.get("HostPort", "")) for f in frontends]
    else:
        for port, frontends in ports.items():
            for f in frontends or ():
                lines.append(
                    f"{port} -> {join_host_port(f.get('HostIp', ''), f.get('HostPort', ''))}"
                )
    for line in sorted(lines, key=natural_key):
        click.echo(line)


@click.command("diff", cls=DockerCommand)
@click.argument("container")
@click.pass_context
def diff_cmd(ctx: click.Context, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem."""
    kinds = {0: "C", 1: "A", 2: "D"}
    for change in _client(ctx).get_json(f"/containers/{container}/changes") or ():
        click.echo(f"{kinds.get(change.get('Kind'), '?')} {change.get('Path', '')}")


@click.command("commit", cls=DockerCommand, context_settings={"allow_interspersed_args": False})
@click.option("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option("-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction")
@click.option("-m", "--message", help="Commit message")
@click.option("-p", "--pause/--no-pause", default=True, help="Pause container during commit")
@click.argument("container")
@click.argument("reference", required=False)
@click.pass_context
def commit_cmd(
    ctx: click.Context,
    author: str | None,
    changes: tuple[str, ...],
    message: str | None,
    pause: bool,
    container: str,
    reference: str | None,
) -> None:
    """Create a new image from a container's changes."""
    repo = tag = None
    if reference:
        from moorage.oci.reference import parse_reference

        ref = parse_reference(reference)
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        repo, tag = ref._replace(tag=None).familiar(), ref.tag
    params = {
        "container": container,
        "repo": repo,
        "tag": tag,
        "comment": message or None,
        "author": author or None,
        "pause": None if pause else False,
        "changes": list(changes) or None,
    }
    result = _client(ctx).request("POST", "/commit", params=params).json()
    click.echo(result["Id"])


# --------------------------------------------------------------------------- cp


@click.command("cp", cls=DockerCommand)
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symlinks in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.argument("source")
@click.argument("destination")
@click.pass_context
def cp_cmd(
    ctx: click.Context,
    archive: bool,
    follow_link: bool,
    quiet: bool,
    source: str,
    destination: str,
) -> None:
    """Copy files/folders between a container and the local filesystem.

    \b
    moor cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
    moor cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH

    Use '-' as the source to read a tar archive from stdin and extract it to a
    directory in the container; '-' as the destination streams a tar archive of
    the container's source to stdout.
    """
    from moorage.cli import cp

    if not source:
        raise InvalidArgument("source can not be empty")
    if not destination:
        raise InvalidArgument("destination can not be empty")
    src_container, src_path = cp.split_cp_arg(source)
    dst_container, dst_path = cp.split_cp_arg(destination)
    quiet = quiet or not sys.stdout.isatty()
    c = _client(ctx)
    if src_container and dst_container:
        raise InvalidArgument("copying between containers is not supported")
    if src_container:
        _copy_from(c, src_container, src_path, dst_path, follow_link, quiet)
    elif dst_container:
        _copy_to(c, dst_container, src_path, dst_path, follow_link, archive, quiet)
    else:
        raise InvalidArgument("must specify at least one container source")


def _archive_stat(c: Client, container: str, path: str) -> dict[str, Any]:
    from moorage.cli import cp

    response = c.request("HEAD", f"/containers/{container}/archive", params={"path": path})
    response.read()
    return cp.path_stat(response.headers.get("X-Docker-Container-Path-Stat"))


def _copy_from(
    c: Client, container: str, src: str, dst: str, follow_link: bool, quiet: bool
) -> None:
    from moorage.cli import cp
    from moorage.cli.containerfmt import human_size

    if dst != "-":
        dst = cp.resolve_local_path(dst)
    rebase = ""
    if follow_link:
        src, rebase = _follow_container_link(c, container, src)
    response = c.request("GET", f"/containers/{container}/archive", params={"path": src})
    if dst == "-":
        for chunk in response.iter_chunks():
            _stdout().write(chunk)
        _stdout().flush()
        return
    stat = cp.path_stat(response.headers.get("X-Docker-Container-Path-Stat"))
    src_info = cp.CopyInfo(src, True, cp.stat_is_dir(stat), rebase)
    dst_dir, rename = cp.prepare_archive_copy(src_info, cp.local_destination_info(dst))
    if rebase:
        base = cp.split_path_dir_entry(src)[1]
        first, then = cp.rebaser(base, rebase), rename
        rename = lambda name: then(first(name))  # noqa: E731 - two renames in a row
    counter = _CountingReader(response.raw)
    try:
        skipped = cp.extract(counter, dst_dir, rename)
    finally:
        response.close()
    for name in skipped:
        click.echo(f"moor: skipped {name!r}: device files and fifos are not copied", err=True)
    if not quiet:
        size = counter.count if cp.stat_is_dir(stat) else int(stat.get("size") or 0)
        click.echo(f"Successfully copied {human_size(size, 3)} to {dst}", err=True)


def _follow_container_link(c: Client, container: str, src: str) -> tuple[str, str]:
    """-L: a symlink source stands for its target, copied under the link's name."""
    import posixpath

    from moorage.cli import cp

    try:
        stat = _archive_stat(c, container, src)
    except MoorageError:
        return src, ""
    if not cp.stat_is_symlink(stat):
        return src, ""
    target = str(stat.get("linkTarget") or "")
    if not target.startswith("/"):
        target = posixpath.join(cp.split_path_dir_entry(src)[0], target)
    base = posixpath.basename(src.rstrip("/"))
    return target, base if posixpath.basename(target.rstrip("/")) != base else ""


class _CountingReader:
    """Counts the bytes tarfile reads off the response: cp's "transferred" size."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        data: bytes = self._raw.read(n)
        self.count += len(data)
        return data


def _copy_to(
    c: Client,
    container: str,
    src: str,
    dst: str,
    follow_link: bool,
    archive: bool,
    quiet: bool,
) -> None:
    from moorage.cli import cp
    from moorage.cli.containerfmt import human_size

    dst_info = _container_destination(c, container, dst)
    params = {"noOverwriteDirNonDir": True, "copyUIDGID": archive or None}
    if src == "-":
        if not dst_info.is_dir:
            raise InvalidArgument(f'destination "{container}:{dst}" must be a directory')
        c.request(
            "PUT",
            f"/containers/{container}/archive",
            params={"path": dst_info.path, **params},
            body=sys.stdin.buffer,
        ).read()
        return
    src_info = cp.local_source_info(cp.resolve_local_path(src), follow_link)
    dst_dir, rename = cp.prepare_archive_copy(src_info, dst_info)
    if src_info.rebase_name:
        base = cp.split_path_dir_entry(src_info.path)[1]
        first, then = cp.rebaser(base, src_info.rebase_name), rename
        rename = lambda name: then(first(name))  # noqa: E731 - two renames in a row
    producer = cp.TarProducer(src_info.path, rename)
    try:
        c.request(
            "PUT",
            f"/containers/{container}/archive",
            params={"path": dst_dir, **params},
            body=producer.reader,
        ).read()
    finally:
        producer.finish()
    if not quiet:
        size = cp.content_size(src_info.path)
        click.echo(
            f"Successfully copied {human_size(size, 3)} to {container}:{dst_info.path}", err=True
        )


def _container_destination(c: Client, container: str, dst: str) -> CopyInfo:
    """docker's view of a destination in the container: followed once if a symlink."""
    import posixpath

    from moorage.cli import cp

    info = cp.CopyInfo(dst)
    try:
        stat = _archive_stat(c, container, dst)
        if cp.stat_is_symlink(stat):
            target = str(stat.get("linkTarget") or "")
            if not target.startswith("/"):
                target = posixpath.join(cp.split_path_dir_entry(dst)[0], target)
            info = cp.CopyInfo(target)
            stat = _archive_stat(c, container, target)
    except NotFound:
        return info
    if not cp.stat_is_dir(stat) and not cp.stat_is_regular(stat):
        raise InvalidArgument(
            f'destination "{container}:{dst}" must be a directory or a regular file'
        )
    return info._replace(exists=True, is_dir=cp.stat_is_dir(stat))


# --------------------------------------------------------------------------- events, prune, df


@click.command("events", cls=DockerCommand)
@click.option("--since", help="Show all events created since timestamp")
@click.option("--until", help="Stream events until this timestamp")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (key=value)")
@click.option("--format", "fmt", help="json or a Go template")
@click.pass_context
def events_cmd(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    filters: tuple[str, ...],
    fmt: str | None,
) -> None:
    """Get real time events from the server."""
    from moorage.cli.containerfmt import event_line
    from moorage.cli.gotemplate import render
    from moorage.cli.runopts import timestamp_arg

    params = {
        "since": timestamp_arg(since) if since else None,
        "until": timestamp_arg(until) if until else None,
        "filters": _filters(filters),
    }
    template = "{{json .}}" if fmt == "json" else fmt
    try:
        for event in _client(ctx).request("GET", "/events", params=params).iter_json_lines():
            click.echo(render(template, event) if template else event_line(event))
    except KeyboardInterrupt:
        sys.exit(130)


def _confirm(message: str) -> bool:
    return click.confirm(message, default=False)


@click.command("prune", cls=DockerCommand)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values ("until=24h")')
@click.pass_context
def container_prune_cmd(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all stopped containers."""
    from moorage.cli.containerfmt import human_size

    if not force and not _confirm(
        "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"
    ):
        return
    reclaimed, output = _prune_containers(_client(ctx), _filters(filters))
    if output:
        click.echo(output)
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


def _prune_containers(c: Client, filters: Any) -> tuple[int, str]:
    result = c.request("POST", "/containers/prune", params={"filters": filters}).json() or {}
    deleted = result.get("ContainersDeleted") or []
    if not deleted:
        return 0, ""
    return int(result.get("SpaceReclaimed") or 0), "Deleted Containers:\n" + "".join(
        f"{cid}\n" for cid in deleted
    )


def _prune_volumes(c: Client, filters: Any) -> tuple[int, str]:
    result = c.request("POST", "/volumes/prune", params={"filters": filters}).json() or {}
    deleted = result.get("VolumesDeleted") or []
    if not deleted:
        return 0, ""
    return int(result.get("SpaceReclaimed") or 0), "Deleted Volumes:\n" + "".join(
        f"{name}\n" for name in deleted
    )


def _prune_images(c: Client, filters: Any, all_images: bool) -> tuple[int, str]:
    wanted = dict(filters or {})
    wanted["dangling"] = {"false" if all_images else "true": True}
    result = c.request("POST", "/images/prune", params={"filters": wanted}).json() or {}
    deleted = result.get("ImagesDeleted") or []
    if not deleted:
        return 0, ""
    lines = ["Deleted Images:"]
    for item in deleted:
        lines += [f"{key.lower()}: {value}" for key, value in item.items()]
    return int(result.get("SpaceReclaimed") or 0), "\n".join(lines) + "\n"


@click.command("prune", cls=DockerCommand)
@click.option("-a", "--all", "all_images", is_flag=True, help="Remove all unused images")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes")
@click.option("--filter", "filters", multiple=True, help='Provide filter values ("label=x")')
@click.pass_context
def system_prune_cmd(
    ctx: click.Context, all_images: bool, force: bool, volumes: bool, filters: tuple[str, ...]
) -> None:
    """Remove unused data (stopped containers, dangling images, with --volumes volumes)."""
    from moorage.cli.containerfmt import human_size

    wanted = _filters(filters)
    if not force and not _confirm(system_prune_warning(all_images, volumes, wanted)):
        return
    c = _client(ctx)
    steps: list[Callable[[], tuple[int, str]]] = [lambda: _prune_containers(c, wanted)]
    if volumes:
        steps.append(lambda: _prune_volumes(c, wanted))
    steps.append(lambda: _prune_images(c, wanted, all_images))
    total = 0
    for step in steps:
        try:
            reclaimed, output = step()
        except (NotFound, NotSupported):
            continue  # an object kind this daemon does not have (yet)
        total += reclaimed
        if output:
            click.echo(output)
    click.echo(f"Total reclaimed space: {human_size(total)}")


def system_prune_warning(all_images: bool, volumes: bool, filters: dict[str, Any] | None) -> str:
    """docker's confirmation text, with what moor prunes (it has no networks nor build cache)."""
    items = ["all stopped containers"]
    if volumes:
        items.append("all anonymous volumes not used by at least one container")
    if all_images:
        items.append("all images without at least one container associated to them")
    else:
        items.append("all dangling images")
    text = "WARNING! This will remove:\n" + "".join(f"  - {item}\n" for item in items)
    shown = sorted(
        f"{name}={value}"
        for name in ("label", "label!", "until")
        for value in (filters or {}).get(name, {})
    )
    if shown:
        text += "\n  Items to be pruned will be filtered with:\n"
        text += "".join(f"  - {item}\n" for item in shown)
    return text + "\nAre you sure you want to continue?"


@click.command("df", cls=DockerCommand)
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage")
@click.option("--format", "fmt", help="table, json or a Go template")
@click.pass_context
def system_df_cmd(ctx: click.Context, verbose: bool, fmt: str | None) -> None:
    """Show disk usage."""
    from moorage.cli.containerfmt import disk_usage_rows

    data = _client(ctx).get_json("/system/df")
    columns = [
        ("TYPE", "Type"),
        ("TOTAL", "TotalCount"),
        ("ACTIVE", "Active"),
        ("SIZE", "Size"),
        ("RECLAIMABLE", "Reclaimable"),
    ]
    print_rows(disk_usage_rows(data), columns, fmt)
    if verbose and not fmt:
        _print_df_details(data)


def _print_df_details(data: dict[str, Any]) -> None:
    from moorage.cli.containerfmt import human_size, ps_row
    from moorage.cli.images import _image_rows

    click.echo("\nImages space usage:\n")
    images = data.get("Images") or []
    rows = _image_rows(images, False)
    for row, image in zip(rows, images, strict=False):
        shared = int(image.get("SharedSize", -1))
        row["SharedSize"] = "N/A" if shared < 0 else human_size(shared, 3)
        row["UniqueSize"] = "N/A" if shared < 0 else human_size(image["Size"] - shared, 3)
        row["Containers"] = str(image.get("Containers", 0))
    print_rows(
        rows,
        [
            ("REPOSITORY", "Repository"),
            ("TAG", "Tag"),
            ("IMAGE ID", "ID"),
            ("CREATED", "CreatedSince"),
            ("SIZE", "Size"),
            ("SHARED SIZE", "SharedSize"),
            ("UNIQUE SIZE", "UniqueSize"),
            ("CONTAINERS", "Containers"),
        ],
        None,
    )
    click.echo("\nContainers space usage:\n")
    print_rows(
        [ps_row(s) for s in data.get("Containers") or []],
        [
            ("CONTAINER ID", "ID"),
            ("IMAGE", "Image"),
            ("COMMAND", "Command"),
            ("LOCAL VOLUMES", "LocalVolumes"),
            ("SIZE", "Size"),
            ("CREATED", "RunningFor"),
            ("STATUS", "Status"),
            ("NAMES", "Names"),
        ],
        None,
    )
    click.echo("\nLocal Volumes space usage:\n")
    volumes = [
        {
            "Name": v.get("Name", ""),
            "Links": str((v.get("UsageData") or {}).get("RefCount", 0)),
            "Size": human_size(int((v.get("UsageData") or {}).get("Size", 0)), 3),
        }
        for v in data.get("Volumes") or []
    ]
    print_rows(volumes, [("VOLUME NAME", "Name"), ("LINKS", "Links"), ("SIZE", "Size")], None)


# --------------------------------------------------------------------------- registration

TOP_LEVEL = (
    create_cmd,
    run_cmd,
    start_cmd,
    stop_cmd,
    restart_cmd,
    kill_cmd,
    rm_cmd,
    ps_cmd,
    logs_cmd,
    inspect_cmd,
    exec_cmd,
    attach_cmd,
    wait_cmd,
    top_cmd,
    stats_cmd,
    cp_cmd,
    port_cmd,
    rename_cmd,
    pause_cmd,
    unpause_cmd,
    update_cmd,
    events_cmd,
    diff_cmd,
    commit_cmd,
)


def register(cli: click.Group) -> None:
    """The container commands, the ``container`` group, and ``system prune``/``df``.

    Call it after ``images.register``: ``system`` is that module's group, and its
    ``df`` gives way to the one here, which counts containers and volumes too.
    """
    for command in TOP_LEVEL:
        cli.add_command(command)
    cli.add_command(container_group())
    system = cli.commands.get("system")
    if not isinstance(system, click.Group):
        system = click.Group("system", help="Manage Moorage.")
        cli.add_command(system)
    register_system(system)


def container_group() -> click.Group:
    group = click.Group("container", help="Manage containers.")
    for command in TOP_LEVEL:
        if command not in (ps_cmd, inspect_cmd, events_cmd):
            group.add_command(command)
    for alias in ("ls", "ps", "list"):
        group.add_command(ps_cmd, alias)
    group.add_command(rm_cmd, "remove")
    group.add_command(container_inspect_cmd)
    group.add_command(container_prune_cmd)
    return group


def register_system(group: click.Group) -> None:
    """``system prune``, ``system df`` and ``system events`` in an existing group."""
    group.add_command(system_prune_cmd)
    group.add_command(system_df_cmd)
    group.add_command(events_cmd)
