"""Build commands: ``moor build`` and ``moor builder prune``, as docker's classic builder.

``moor build`` packs the context (:mod:`moorage.api.build_context`), posts it to
``/build`` and prints the daemon's messages as they come: the steps' text on stdout,
a failure on stderr with exit status 1 (the daemon's message as it is, as docker
prints ``The command '/bin/sh -c false' returned a non-zero code: 1``). ``-q`` prints
the image id alone (and on a failure, what the build printed, on stderr).

``--progress tty`` (``auto`` on a terminal) shows the steps live instead
(:mod:`moorage.cli.build_display`); ``plain`` prints the daemon's text as it is.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Mapping
from typing import IO, Any, BinaryIO, NoReturn, cast

import click

from moorage.cli.connect import client
from moorage.errors import InvalidArgument, MoorageError, NotSupported

# BuildKit's limit on one secret (buildx: "secret too big. max size 500KB").
MAX_SECRET_SIZE = 500 * 1024
_OUTPUT_TYPES = ("docker", "oci")


def _client(ctx: click.Context) -> Any:
    return client(ctx.obj.get("host") if ctx.obj else None)


def _size(size: float) -> str:
    """docker's units.HumanSize: decimal units, four significant digits (``2.048kB``)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


# --- options ------------------------------------------------------------------------


def build_args(values: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    """``--build-arg K=V``; a bare ``K`` takes K from ``environ`` and is left out when
    K is not set there, as docker does."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid build-arg: {item!r} (want KEY=VALUE or KEY)")
        if sep:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


def labels(values: tuple[str, ...]) -> dict[str, str]:
    """``--label K=V``; a bare ``K`` is ``K=""``."""
    out: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label: {item!r} (want KEY=VALUE)")
        out[key] = value
    return out


def _fields(value: str, what: str) -> dict[str, str]:
    """``k=v,k=v`` (CSV, so values may be quoted), keys lower-cased."""
    import csv

    out: dict[str, str] = {}
    for row in csv.reader([value]):
        for field in row:
            key, sep, item = field.partition("=")
            if not sep:
                raise InvalidArgument(
                    f"invalid {what} {value!r}: {field!r} is not a key=value pair"
                )
            out[key.strip().lower()] = item
    return out


def secret(value: str, environ: Mapping[str, str]) -> tuple[str, bytes] | None:
    """``--secret`` as BuildKit reads it: ``id=ID[,src=FILE|source=FILE][,type=file]``
    or ``id=ID,env=NAME`` / ``type=env,id=ID[,env=NAME]``; with neither a file nor a
    variable, the variable named ID if it is set, else the file named ID. A variable
    that is not set gives no secret (a RUN that needs it says so)."""
    fields = _fields(value, "secret")
    unknown = set(fields) - {"id", "type", "src", "source", "env"}
    if unknown:
        raise InvalidArgument(f"invalid secret {value!r}: unexpected key {sorted(unknown)[0]!r}")
    kind = fields.get("type", "")
    if kind not in ("", "file", "env"):
        raise InvalidArgument(f"invalid secret {value!r}: unsupported type {kind!r}")
    ident = fields.get("id", "")
    path = fields.get("src", fields.get("source", ""))
    env = fields.get("env", "")
    if kind == "env" and not env:
        env, path = path or ident, ""
    if not ident:
        ident = os.path.basename(path) if path else env
    if not ident:
        raise InvalidArgument(f"invalid secret {value!r}: the id is missing")
    if not path and not env:
        if ident in environ:
            env = ident
        else:
            path = ident
    if env and not path:
        return (ident, environ[env].encode()) if env in environ else None
    try:
        size = os.stat(path).st_size
        if size > MAX_SECRET_SIZE:
            raise InvalidArgument(f"secret {ident} is too big: {size} bytes, the limit is 500KB")
        with open(path, "rb") as f:
            return ident, f.read(MAX_SECRET_SIZE + 1)
    except OSError as exc:
        raise InvalidArgument(f"cannot read secret {ident} from {path}: {exc.strerror}") from exc


def output(value: str) -> tuple[str, str]:
    """``-o type=docker|oci,dest=FILE`` as (type, dest)."""
    if "=" not in value:
        raise NotSupported(
            f"output {value!r}: exporting the build's files to a directory is not supported "
            "(use type=docker,dest=FILE or type=oci,dest=FILE)"
        )
    fields = _fields(value, "output")
    kind = fields.get("type", "")
    if kind not in _OUTPUT_TYPES:
        raise NotSupported(f"output {value!r}: type {kind!r} is not supported: want docker or oci")
    unknown = set(fields) - {"type", "dest"}
    if unknown:
        raise InvalidArgument(f"invalid output {value!r}: unexpected key {sorted(unknown)[0]!r}")
    dest = fields.get("dest", "")
    if not dest or dest == "-":
        raise InvalidArgument(f"invalid output {value!r}: dest=FILE is required")
    return kind, dest


def check_platform(value: str) -> None:
    """Only this machine's platform: Moorage builds without emulation."""
    from moorage.oci.platform import host_platform, matches, parse_platform

    host = host_platform()
    if not matches(host, parse_platform(value)):
        raise NotSupported(
            f"cannot build for platform {value}: only this machine's platform ({host}) is supported"
        )


def check_tags(tags: tuple[str, ...]) -> None:
    from moorage.oci.reference import parse_reference

    for tag in tags:
        if parse_reference(tag).digest is not None:
            raise InvalidArgument(f"invalid tag {tag}: a build tag cannot contain a digest")


def _is_remote(context: str) -> bool:
    prefixes = ("http://", "https://", "git://", "git@", "github.com/")
    return context.startswith(prefixes) and not os.path.exists(context)


# --- the build ----------------------------------------------------------------------


class _Counted:
    """The context as it is read for the upload; says how much went once it is all read."""

    def __init__(self, source: BinaryIO, done: Any) -> None:
        self.source = source
        self.done = done
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        if data:
            self.size += len(data)
        elif self.done is not None:
            self.done(self.size)
            self.done = None
        return data


class _Feed:
    """The build's text into the live display, where run_build writes it."""

    def __init__(self, display: Any) -> None:
        self.display = display

    def write(self, text: str) -> int:
        self.display.feed(text)
        return len(text)

    def flush(self) -> None:
        pass


class BuildFailed(MoorageError):
    """The daemon reported an error in the build's stream."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run_build(
    c: Any,
    context: BinaryIO,
    params: dict[str, Any],
    headers: dict[str, str],
    out: IO[str],
    quiet: bool,
    *,
    announce: bool = True,
) -> str:
    """POST the build and print its messages to ``out`` as they come (nothing with
    ``quiet``); the image id. :class:`BuildFailed` for an error in the stream, after
    writing what ``quiet`` held back to stderr."""
    held: list[str] = []

    def sent(size: int) -> None:
        if not quiet and announce:
            out.write(f"Sending build context to Docker daemon  {_size(size)}\n")
            out.flush()

    body = _Counted(context, sent)
    response = c.request("POST", "/build", params=params, body=body, headers=headers)
    image_id = ""
    for message in response.iter_json_lines():
        if "errorDetail" in message or "error" in message:
            detail = message.get("errorDetail") or {}
            text = detail.get("message") or message.get("error") or "build failed"
            if held:
                sys.stderr.write("".join(held))
            raise BuildFailed(text, int(detail.get("code") or 1))
        aux = message.get("aux")
        if isinstance(aux, dict):
            image_id = aux.get("ID") or image_id
            continue
        text = _text_of(message)
        if not text:
            continue
        if quiet:
            held.append(text)
        else:
            out.write(text)
            out.flush()
    if not image_id and quiet and held:
        image_id = "".join(held).strip()  # the daemon's q=1 answer: the id alone
    return image_id


def _client_is_root() -> bool:
    return os.geteuid() == 0


def _build_in_place(
    c: Any,
    context: str,
    dockerfile: str | None,
    params: dict[str, Any],
    headers: dict[str, str],
    quiet: bool,
    out: IO[str],
) -> str | None:
    """The build with the context read in place by the daemon, when this client is
    root, the daemon can, and the context qualifies (see
    :mod:`moorage.api.build_context`); None when the context has to be sent."""
    from moorage.api import build_context

    if context == "-" or dockerfile == "-" or not _client_is_root():
        return None
    place = build_context.context_in_place(context, dockerfile)
    if place is None:
        return None
    ping = c.request("HEAD", "/_ping")
    ping.read()
    features = ping.headers.get(build_context.FEATURES_HEADER.lower(), "")
    if build_context.CONTEXT_DIR_FEATURE not in features.split(","):
        return None
    root, inside = place
    try:
        return run_build(
            c,
            io.BytesIO(b""),
            {**params, "dockerfile": inside},
            {**headers, build_context.CONTEXT_DIR_HEADER: root},
            out,
            quiet,
            announce=False,
        )
    except NotSupported as exc:
        if str(exc).startswith(build_context.CONTEXT_DIR_DECLINED):
            return None
        raise


def _text_of(message: dict[str, Any]) -> str:
    """What docker's plain display prints for one message."""
    if "stream" in message:
        return str(message["stream"])
    status = message.get("status")
    if not status or message.get("progressDetail"):
        return ""  # progress bars are for terminals
    ident = message.get("id")
    return f"{ident}: {status}\n" if ident else f"{status}\n"


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True, help="name and optionally a tag (name:tag)")
@click.option(
    "-f",
    "--file",
    "dockerfile",
    default=None,
    help="Dockerfile (default: CONTEXT/Dockerfile; - for stdin)",
)
@click.option("--target", default=None, help="build this stage")
@click.option(
    "--build-arg", "build_arg_values", multiple=True, help="KEY=VALUE, or KEY from the environment"
)
@click.option("--label", "label_values", multiple=True, help="KEY=VALUE image label")
@click.option("--secret", "secret_values", multiple=True, help="id=ID,src=FILE or id=ID,env=NAME")
@click.option("--no-cache", is_flag=True, help="do not use the build cache")
@click.option("--pull", is_flag=True, help="always look for newer base images")
@click.option(
    "--progress",
    type=click.Choice(["auto", "plain", "tty"]),
    default="auto",
    show_default=True,
    help="how to show progress: auto (tty on a terminal), plain or tty",
)
@click.option("--platform", default=None, help="linux/ARCH: this machine's platform only")
@click.option(
    "--network",
    type=click.Choice(["default", "bridge", "host", "none"]),
    default="default",
    show_default=True,
    help="the network of RUN steps",
)
@click.option("-o", "--output", "output_value", default=None, help="type=docker|oci,dest=FILE")
@click.option("--iidfile", default=None, help="write the image id to this file")
@click.option("-q", "--quiet", is_flag=True, help="print only the image id")
@click.argument("context")
@click.pass_context
def build_cmd(
    ctx: click.Context,
    tags: tuple[str, ...],
    dockerfile: str | None,
    target: str | None,
    build_arg_values: tuple[str, ...],
    label_values: tuple[str, ...],
    secret_values: tuple[str, ...],
    no_cache: bool,
    pull: bool,
    progress: str,
    platform: str | None,
    network: str,
    output_value: str | None,
    iidfile: str | None,
    quiet: bool,
    context: str,
) -> None:
    """Build an image from a Dockerfile and a context (a directory, or - for a tar or a
    Dockerfile on stdin)."""
    from moorage.api import build_context

    check_tags(tags)
    if platform:
        check_platform(platform)
    exported = output(output_value) if output_value else None
    if _is_remote(context):
        raise NotSupported(f"remote build contexts are not supported: {context}")
    if context == "-" and dockerfile == "-":
        raise InvalidArgument(
            "invalid argument: can't use stdin for both build context and dockerfile"
        )
    secrets = dict(s for v in secret_values if (s := secret(v, os.environ)) is not None)
    headers = (
        {build_context.SECRETS_HEADER: build_context.encode_secrets(secrets)} if secrets else {}
    )
    headers.update(build_context.stored_logins_header())
    if iidfile:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(iidfile)  # no stale id when this build fails
    params: dict[str, Any] = {
        "version": "1",
        "t": list(tags) or None,
        "q": quiet,
        "nocache": no_cache,
        "pull": pull,
        "rm": True,
        "buildargs": build_args(build_arg_values, os.environ) or None,
        "labels": labels(label_values) or None,
        "target": target,
        "platform": platform,
        "networkmode": network,
    }
    c = _client(ctx)
    live = not quiet and (progress == "tty" or (progress == "auto" and sys.stdout.isatty()))
    display = None
    out: IO[str] = sys.stdout
    if live:
        from moorage.cli.build_display import TtyDisplay

        display = TtyDisplay(sys.stdout)
        out = cast(IO[str], _Feed(display))
    try:
        image_id = _build_in_place(c, context, dockerfile, params, headers, quiet, out)
        if image_id is None:
            stdin = sys.stdin.buffer
            if context == "-":
                packed = build_context.context_from_reader(stdin, dockerfile)
            elif dockerfile == "-":
                packed = build_context.pack_context(context, dockerfile_content=stdin.read())
            else:
                packed = build_context.pack_context(context, dockerfile)
            with packed.file:
                params["dockerfile"] = packed.dockerfile
                image_id = run_build(c, packed.file, params, headers, out, quiet)
    except BuildFailed as exc:
        if display is not None:
            display.close(failed=True)
            display = None
        _fail(str(exc), exc.code)
    finally:
        if display is not None:
            display.close()
    if quiet:
        click.echo(image_id)
    if iidfile:
        if not image_id:
            _fail(f"the daemon did not provide an image id: cannot write {iidfile}")
        with open(iidfile, "w") as f:
            f.write(image_id)
    if exported is not None:
        kind, dest = exported
        _export(c, list(tags) or [image_id], kind, dest)


def _export(c: Any, names: list[str], kind: str, dest: str) -> None:
    """``-o type=docker|oci,dest=FILE``: the built image saved by the daemon."""
    response = c.request("GET", "/images/get", params={"names": names, "format": kind})
    tmp = f"{dest}.moor-{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            for chunk in response.iter_chunks():
                f.write(chunk)
        os.rename(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- the cache ----------------------------------------------------------------------


@click.command("prune")
@click.option("-a", "--all", "all_cache", is_flag=True, help="all build cache, not only dangling")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, help="until=DURATION, ...")
@click.pass_context
def prune_cmd(ctx: click.Context, all_cache: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove build cache."""
    from moorage.cli.output import human_size, parse_filters

    wanted = parse_filters(filters)
    if not force:
        what = "all build cache" if all_cache else "all dangling build cache"
        click.confirm(
            f"WARNING! This will remove {what}.\nAre you sure you want to continue?", abort=True
        )
    result = (
        _client(ctx)
        .request("POST", "/build/prune", params={"all": all_cache, "filters": wanted or None})
        .json()
    )
    deleted = result.get("CachesDeleted") or []
    if deleted:
        click.echo("Deleted build cache objects:")
        for ident in deleted:
            click.echo(ident)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")


def register(cli: click.Group) -> None:
    cli.add_command(build_cmd)

    @cli.group("builder")
    def builder_group() -> None:
        """Manage builds."""

    builder_group.add_command(build_cmd)
    builder_group.add_command(prune_cmd)
